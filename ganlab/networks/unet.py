"""pix2pix U-Net generator (Isola et al., 2017), as `UnetGenerator` in the official
pytorch-CycleGAN-and-pix2pix models/networks.py: unet_256 is num_downs 8, unet_128 is 7,
and num_downs 6 fits 64x64 (1x1 bottleneck each time)."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.networks.dcgan import dcgan_init_
from ganlab.networks.translation_layers import check_divisible, conv_bias, make_norm

MIN_DOWNS = 5  # the fixed outer blocks: widths w, 2w, 4w, 8w and the innermost 8w


class UnetSkipBlock(nn.Module):
    """down -> inner block -> up, with the block's input concatenated to its output (the skip)."""

    def __init__(
        self,
        outer_width: int,  # channels this block returns (before the skip concat)
        inner_width: int,  # channels after this block's downsampling conv
        inner: nn.Module | None,  # the next deeper block; None for the innermost
        in_channels: int | None = None,  # input channels when not outer_width (the outermost)
        outermost: bool = False,  # no norm/activation on the way in, Tanh out, no skip
        norm: str = "batch",  # "batch", "instance" or "none"
        dropout: bool = False,  # Dropout(0.5) after the up path (the inner 8w blocks)
        out_activation: nn.Module | None = None,  # the outermost's; None: Tanh
    ):
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        in_channels = outer_width if in_channels is None else in_channels
        # The official LeakyReLU is in-place and so also alters the skip; the parent's up path
        # starts with ReLU, and ReLU(LeakyReLU(x)) == ReLU(x): out-of-place gives the same output.
        down_conv = nn.Conv2d(in_channels, inner_width, 4, 2, 1, bias=bias)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner_width * 2, outer_width, 4, 2, 1)
            layers = [down_conv, inner, nn.ReLU(), up_conv, out_activation or nn.Tanh()]
        elif inner is None:
            up_conv = nn.ConvTranspose2d(inner_width, outer_width, 4, 2, 1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2),
                down_conv,
                nn.ReLU(),
                up_conv,
                make_norm(norm, outer_width),
            ]
        else:
            up_conv = nn.ConvTranspose2d(inner_width * 2, outer_width, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down_conv, make_norm(norm, inner_width), inner]
            layers += [nn.ReLU(), up_conv, make_norm(norm, outer_width)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """image (B, channels, H, W) -> image (B, out_channels, H, W) in [-1, 1].

    H and W must be multiples of 2**num_downs (the bottleneck is then 1x1 at the minimum size).

    Channels w-2w-4w-8w-8w..., skips concatenate; Dropout(0.5) in the num_downs-5 inner 8w blocks.

    `refine_width` > 0 (not in pix2pix): the outermost up-conv gives that many features (ReLU),
    and two 3x3 convs on them concatenated with the input image give the output at full
    resolution. Without it every output pixel comes from 2x upsampled features: edges one or two
    pixels wide (thin text) cannot be placed exactly.
    """

    def __init__(
        self,
        channels: int = 3,  # input image channels
        out_channels: int = 3,  # output image channels
        num_downs: int = 8,  # stride-2 halvings: 8 for 256x256, 7 for 128x128, 6 for 64x64
        base_width: int = 64,  # channels of the first conv (ngf); doubles up to 8x
        norm: str = "batch",  # "batch" (pix2pix), "instance" or "none"
        dropout: bool = True,  # pix2pix keeps dropout on (its noise source)
        refine_width: int = 0,  # > 0: a full-resolution head of this width (see above)
    ):
        super().__init__()
        if num_downs < MIN_DOWNS:
            raise ValueError(f"num_downs={num_downs} is too small; accepted: >= {MIN_DOWNS}")
        if isinstance(refine_width, bool) or not isinstance(refine_width, int) or refine_width < 0:
            raise ConfigError(
                f"model.generator.refine_width={refine_width!r} is not a width; accepted: 0 (no "
                "full-resolution head, as pix2pix) or a positive integer"
            )
        self.num_downs = num_downs
        w = base_width
        block = UnetSkipBlock(w * 8, w * 8, None, norm=norm)
        for _ in range(num_downs - MIN_DOWNS):
            block = UnetSkipBlock(w * 8, w * 8, block, norm=norm, dropout=dropout)
        for outer in (4, 2, 1):
            block = UnetSkipBlock(w * outer, w * outer * 2, block, norm=norm)
        self.model = UnetSkipBlock(
            refine_width or out_channels,
            w,
            block,
            channels,
            outermost=True,
            norm=norm,
            out_activation=nn.ReLU() if refine_width else None,
        )
        self.refine = None
        if refine_width:
            self.refine = nn.Sequential(
                nn.Conv2d(refine_width + channels, refine_width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(refine_width, out_channels, 3, padding=1),
                nn.Tanh(),
            )
        dcgan_init_(self)  # N(0, 0.02), BN scale N(1, 0.02): the official init_weights('normal')

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.num_downs

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_divisible(*image.shape[-2:], 2**self.num_downs, f"U-Net (num_downs={self.num_downs})")
        if self.refine is None:
            return self.model(image)
        return self.refine(torch.cat([self.model(image), image], 1))

"""CycleGAN's ResNet-n-blocks generator (`ResnetGenerator` in the official
pytorch-CycleGAN-and-pix2pix models/networks.py): resnet_9blocks for 256x256, 6 for 128x128."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.networks.dcgan import dcgan_init_
from ganlab.networks.translation_layers import check_divisible, conv_bias, make_norm

DOWNSAMPLINGS = 2


class ReflectResBlock(nn.Module):
    """x + (ReflPad1 -> Conv3 -> norm -> ReLU -> [Dropout] -> ReflPad1 -> Conv3 -> norm)(x)."""

    def __init__(
        self,
        width: int,  # channels in and out
        norm: str,  # "instance", "batch" or "none"
        dropout: bool,  # Dropout(0.5) between the two convs
    ):
        super().__init__()
        bias = conv_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias)]
        layers += [make_norm(norm, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3, bias=bias),
            make_norm(norm, width),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetTranslator(nn.Module):
    """image (B, channels, H, W) -> image (B, out_channels, H, W) in [-1, 1]; H, W % 4 == 0.

    C7 w -> C3 s2 2w -> C3 s2 4w -> n_blocks residual blocks -> ConvT 2w -> ConvT w -> C7 -> Tanh,
    reflect padding, instance norm without affine (so every conv keeps its bias).

    `residual=True` (not in the official code; off by default) returns clamp(image + that, -1, 1)
    with the last conv zero-initialised: the network starts as the identity and learns a change
    of the input, for domains that differ by colour and texture rather than by content.
    """

    def __init__(
        self,
        channels: int = 3,  # input image channels
        out_channels: int = 3,  # output image channels
        base_width: int = 64,  # channels of the first conv (ngf); 4x in the residual blocks
        n_blocks: int = 9,  # residual blocks: 9 for 256x256, 6 for 128x128
        norm: str = "instance",  # "instance" (CycleGAN), "batch" or "none"
        dropout: bool = False,  # CycleGAN trains without dropout (--no_dropout is its default)
        residual: bool = False,  # output clamp(image + net(image)), starting as the identity
    ):
        super().__init__()
        if not isinstance(residual, bool):
            raise ConfigError(f"residual={residual!r} must be true or false")
        if residual and channels != out_channels:
            raise ConfigError(
                f"residual=true adds the output to the input, so channels ({channels}) and "
                f"out_channels ({out_channels}) must be equal; set residual=false"
            )
        bias = conv_bias(norm)
        w = base_width
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7, bias=bias), make_norm(norm, w)]
        layers.append(nn.ReLU())
        for i in range(DOWNSAMPLINGS):
            width = w * 2**i
            layers += [nn.Conv2d(width, width * 2, 3, 2, 1, bias=bias), make_norm(norm, width * 2)]
            layers.append(nn.ReLU())
        layers += [ReflectResBlock(w * 2**DOWNSAMPLINGS, norm, dropout) for _ in range(n_blocks)]
        for i in range(DOWNSAMPLINGS):
            width = w * 2 ** (DOWNSAMPLINGS - i)
            up = nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1, bias=bias)
            layers += [up, make_norm(norm, width // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        dcgan_init_(self)  # N(0, 0.02): the official init_weights('normal')
        self.residual = residual
        if residual:  # tanh(0) = 0: the output is the input until the last conv learns
            last = self.model[-2]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    size_multiple = 2**DOWNSAMPLINGS  # input height and width must be multiples of this

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_divisible(*image.shape[-2:], 2**DOWNSAMPLINGS, "ResNet translator")
        if self.residual:
            return (image + self.model(image)).clamp(-1.0, 1.0)
        return self.model(image)

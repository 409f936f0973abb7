"""PatchGAN discriminator (pix2pix/CycleGAN `NLayerDiscriminator`): a map of patch logits.

Each output logit sees a square input window of `patchgan_receptive_field(n_layers)` pixels:
16, 34, 70, 142, 286 for n_layers 1..5 (n_layers 3 is the paper's 70x70 PatchGAN). The output is
(B, 1, h, w), e.g. 30x30 for a 256x256 input and 6x6 for 64x64 at n_layers 3.
"""

from __future__ import annotations

import torch
from torch import nn

from ganlab.networks.dcgan import dcgan_init_
from ganlab.networks.translation_layers import conv_bias, make_norm

KERNEL = 4


def _strides(n_layers: int) -> list[int]:
    return [2] * n_layers + [1, 1]  # n_layers halvings, then the s1 conv and the logit conv


def patchgan_receptive_field(n_layers: int) -> int:
    """Input window one output logit depends on: 16/34/70/142/286 for n_layers 1..5."""
    field = 1
    for stride in reversed(_strides(n_layers)):
        field = (field - 1) * stride + KERNEL
    return field


class PatchGANDiscriminator(nn.Module):
    """image (B, channels, H, W) -> patch logits (B, 1, h, w); no sigmoid (the loss applies it)."""

    def __init__(
        self,
        channels: int = 6,  # input channels: 6 for pix2pix's cat(A, B), 3 for CycleGAN
        base_width: int = 64,  # channels of the first conv (ndf); doubles, capped at 8x
        n_layers: int = 3,  # stride-2 convs; sets the receptive field (3 -> 70x70)
        norm: str = "batch",  # "batch" (pix2pix), "instance" (CycleGAN) or "none"
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers} is not supported; accepted: >= 1")
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(channels, base_width, KERNEL, 2, 1), nn.LeakyReLU(0.2)]
        width = base_width
        for n, stride in enumerate(_strides(n_layers)[1:-1], start=1):
            next_width = base_width * min(2**n, 8)
            layers += [
                nn.Conv2d(width, next_width, KERNEL, stride, 1, bias=bias),
                make_norm(norm, next_width),
                nn.LeakyReLU(0.2),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, KERNEL, 1, 1))
        self.model = nn.Sequential(*layers)
        self.in_channels = channels
        self.n_layers = n_layers
        self.receptive_field = patchgan_receptive_field(n_layers)
        dcgan_init_(self)  # N(0, 0.02), BN scale N(1, 0.02): the official init_weights('normal')

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Each stride-2 conv floors the side by 2, each stride-1 conv takes 1 off: keep >= 1 logit.
        smallest = 3 * 2**self.n_layers
        if min(image.shape[-2:]) < smallest:
            raise ValueError(
                f"PatchGAN (n_layers={self.n_layers}) input {tuple(image.shape[-2:])} is too "
                f"small; sides must be >= {smallest}"
            )
        return self.model(image)

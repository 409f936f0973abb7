"""DCGAN (Radford et al., 2016) generator and discriminator for 32x32 or 64x64 images."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganlab.networks.layers import spectral_norm_

SUPPORTED_RESOLUTIONS = (32, 64)


def _num_upsamplings(resolution: int) -> int:
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"DCGAN resolution={resolution} is not supported; accepted: {SUPPORTED_RESOLUTIONS} "
            "(set data.resolution to one of them)"
        )
    return int(math.log2(resolution)) - 2  # from the 4x4 base


def dcgan_init_(module: nn.Module) -> None:
    """The paper's init: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z -> 4x4 -> (ConvTranspose, BatchNorm, ReLU) x k -> ConvTranspose -> Tanh image."""

    def __init__(
        self,
        latent_dim: int = 100,  # size of the noise vector z
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # output side, 32 or 64 (from the data config)
        base_width: int = 64,  # channels of the last hidden layer; doubles toward the 4x4 base
    ):
        super().__init__()
        self.latent_dim = latent_dim
        ups = _num_upsamplings(resolution)
        width = base_width * 2 ** (ups - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(ups - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image -> strided Conv (+BatchNorm) + LeakyReLU down to 4x4 -> one logit per sample (B,)."""

    def __init__(
        self,
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # input side, 32 or 64 (from the data config)
        base_width: int = 64,  # channels of the first layer; doubles at each downsampling
        batch_norm: bool = True,  # the paper's BatchNorm; turn off for gradient penalties
        spectral_norm: bool = False,  # the spectral-norm switch for D
    ):
        super().__init__()
        downs = _num_upsamplings(resolution)
        width = base_width
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(downs - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()

"""Fully connected generator and discriminator: the classic GAN and the 2D toy models."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ganlab.networks.layers import spectral_norm_

_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity}


def _output_activation(name: str | None) -> nn.Module:
    key = "none" if name is None else name
    if key not in _ACTIVATIONS:
        raise ValueError(f"out_activation={name!r} is not one of {sorted(_ACTIVATIONS)} or null")
    return _ACTIVATIONS[key]()


class MLPGenerator(nn.Module):
    """z -> hidden Linear+LeakyReLU layers -> data of `out_shape`."""

    def __init__(
        self,
        latent_dim: int,  # size of the noise vector z
        out_shape: Sequence[int],  # shape of one sample, e.g. (1, 28, 28) or (2,)
        hidden: Sequence[int] = (256, 512, 1024),  # widths of the hidden layers
        out_activation: str | None = "tanh",  # tanh for data in [-1, 1]; null for 2D points
        negative_slope: float = 0.2,  # LeakyReLU slope; 0 is ReLU
        batch_norm: bool = False,  # BatchNorm1d before each hidden activation
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = tuple(int(s) for s in out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.LeakyReLU(negative_slope))
            width = h
        layers += [nn.Linear(width, math.prod(self.out_shape)), _output_activation(out_activation)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """data -> hidden Linear+LeakyReLU(+Dropout) layers -> one logit per sample, shape (B,)."""

    def __init__(
        self,
        in_shape: Sequence[int],  # shape of one sample
        hidden: Sequence[int] = (1024, 512, 256),  # widths of the hidden layers
        dropout: float = 0.3,  # dropout after each hidden layer; 0 turns it off
        negative_slope: float = 0.2,  # LeakyReLU slope
        spectral_norm: bool = False,  # the spectral-norm switch for D
    ):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(negative_slope)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

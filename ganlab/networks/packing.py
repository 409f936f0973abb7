"""PacGAN packing (Lin et al., 2018): the discriminator judges `pack` samples jointly.

A generator that drops modes makes packs of near-identical samples, which a discriminator
seeing whole packs tells apart from real packs far more easily than single samples.
"""

from __future__ import annotations

import torch
from torch import nn


class Packed(nn.Module):
    """Wraps a discriminator built for `pack` samples concatenated on their first axis
    (features of vectors, channels of images): (B, C, ...) -> (B // pack,) logits.

    Consecutive samples form a pack, so B must be a multiple of `pack`; the losses average
    over packs as they do over samples. Unconditional discriminators only.
    """

    def __init__(self, discriminator: nn.Module, pack: int = 2):
        super().__init__()
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise ValueError(f"pack={pack!r} must be an integer >= 1 (1: no packing)")
        self.discriminator = discriminator
        self.pack = pack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.pack:
            raise ValueError(
                f"a batch of {x.shape[0]} samples does not split into packs of {self.pack}; "
                f"use a batch size that is a multiple of {self.pack}"
            )
        packs = x.reshape(x.shape[0] // self.pack, self.pack * x.shape[1], *x.shape[2:])
        return self.discriminator(packs)

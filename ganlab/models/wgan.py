"""WGAN with weight clipping (Arjovsky et al., 2017)."""

from __future__ import annotations

import torch

from ganlab.errors import ConfigError
from ganlab.models.base import GANModule


class WGAN(GANModule):
    """After every critic update, each critic weight is clamped to [-clip_value, clip_value]: the
    paper's crude Lipschitz constraint. (For the gradient penalty instead, see model=wgan_gp,
    which is the plain GANModule with a `GradientPenalty` regularizer.)"""

    def __init__(self, *args, clip_value: float = 0.01, **kwargs):
        super().__init__(*args, **kwargs)
        if not clip_value > 0:
            raise ConfigError(f"model.clip_value={clip_value} must be > 0")
        self.clip_value = clip_value

    @torch.no_grad()
    def after_d_step(self) -> None:
        for param in self.discriminator.parameters():
            param.clamp_(-self.clip_value, self.clip_value)

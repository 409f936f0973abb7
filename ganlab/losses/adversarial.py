"""Adversarial objectives as (discriminator, generator) function pairs on raw logits.

Each `*_d_loss(real_logits, fake_logits)` is minimized by the discriminator (critic) and each
`*_g_loss(fake_logits)` by the generator. Inputs are the discriminator's raw outputs, shape (B,).
The classes bundle a pair so that a config picks an objective with one `_target_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Goodfellow et al.: -log D(x) - log(1 - D(G(z))), written with softplus for stability."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def bce_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss: -log D(G(z))."""
    return F.softplus(-fake_logits).mean()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Geometric GAN / SNGAN: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def wasserstein_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """WGAN critic: D(G(z)) - D(x); needs a Lipschitz constraint (clipping, GP or SN)."""
    return fake_logits.mean() - real_logits.mean()


def wasserstein_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def lsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Mao et al. (a=0, b=c=1): 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2."""
    return 0.5 * (real_logits - 1.0).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def lsgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake_logits - 1.0).pow(2).mean()


class AdversarialLoss:
    """A named (d_loss, g_loss) pair. Subclass and override both methods for a new objective."""

    name = "adversarial"

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BCELoss(AdversarialLoss):
    name = "bce"

    def d_loss(self, real_logits, fake_logits):
        return bce_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits):
        return bce_g_loss(fake_logits)


class HingeLoss(AdversarialLoss):
    name = "hinge"

    def d_loss(self, real_logits, fake_logits):
        return hinge_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits):
        return hinge_g_loss(fake_logits)


class WassersteinLoss(AdversarialLoss):
    name = "wasserstein"

    def d_loss(self, real_logits, fake_logits):
        return wasserstein_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits):
        return wasserstein_g_loss(fake_logits)


class LSGANLoss(AdversarialLoss):
    name = "lsgan"

    def d_loss(self, real_logits, fake_logits):
        return lsgan_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits):
        return lsgan_g_loss(fake_logits)

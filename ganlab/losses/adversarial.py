"""Adversarial objectives as (discriminator, generator) function pairs on raw logits.

Each `*_d_loss(real_logits, fake_logits)` is minimized by the discriminator (critic) and each
`*_g_loss(fake_logits)` by the generator. Inputs are the discriminator's raw outputs, shape (B,).
Relativistic losses (Jolicoeur-Martineau, 2018) compare fakes with reals in the generator step
too: their `*_g_loss(fake_logits, real_logits)` take both. The classes bundle a pair so that a
config picks an objective with one `_target_`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganlab.errors import ConfigError


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


def rsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RSGAN: E[-log sigmoid(C(x_r) - C(x_f))] over pairs (x_r, x_f), here real i with fake i."""
    return F.softplus(fake_logits - real_logits).mean()


def rsgan_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """RSGAN: E[-log sigmoid(C(x_f) - C(x_r))]: the D loss with real and fake swapped."""
    return rsgan_d_loss(fake_logits, real_logits)


def ragan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RaSGAN (relativistic average): -E_r[log sigmoid(C(x_r) - E_f C(x_f))]
    - E_f[log(1 - sigmoid(C(x_f) - E_r C(x_r)))]: is a real more real than the average fake?"""
    real_vs_fake = real_logits - fake_logits.mean()
    fake_vs_real = fake_logits - real_logits.mean()
    return F.softplus(-real_vs_fake).mean() + F.softplus(fake_vs_real).mean()


def ragan_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """RaSGAN: -E_f[log sigmoid(C(x_f) - E_r C(x_r))] - E_r[log(1 - sigmoid(C(x_r) - E_f C(x_f)))];
    the reals' term is what makes G depend on the real logits."""
    return ragan_d_loss(fake_logits, real_logits)


def ralsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RaLSGAN: E_r[(C(x_r) - E_f C(x_f) - 1)^2] + E_f[(C(x_f) - E_r C(x_r) + 1)^2]."""
    real_vs_fake = real_logits - fake_logits.mean()
    fake_vs_real = fake_logits - real_logits.mean()
    return (real_vs_fake - 1.0).pow(2).mean() + (fake_vs_real + 1.0).pow(2).mean()


def ralsgan_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """RaLSGAN: E_f[(C(x_f) - E_r C(x_r) - 1)^2] + E_r[(C(x_r) - E_f C(x_f) + 1)^2]."""
    return ralsgan_d_loss(fake_logits, real_logits)


class AdversarialLoss:
    """A named (d_loss, g_loss) pair. Subclass and override both methods for a new objective.

    A loss whose generator term compares fakes with reals sets `needs_real_logits = True`; the
    model then computes the real logits in the generator step too and passes them to `g_loss`.
    Other losses are called as `g_loss(fake_logits)`, so an override with that signature works.
    """

    name = "adversarial"
    needs_real_logits = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(
        self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BCELoss(AdversarialLoss):
    name = "bce"

    def d_loss(self, real_logits, fake_logits):
        return bce_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return bce_g_loss(fake_logits)


class HingeLoss(AdversarialLoss):
    name = "hinge"

    def d_loss(self, real_logits, fake_logits):
        return hinge_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return hinge_g_loss(fake_logits)


class WassersteinLoss(AdversarialLoss):
    """The WGAN critic loss; `drift` > 0 adds ProGAN's drift term drift * E[D(x)^2] (Karras et
    al., 2018: 0.001), which keeps the critic's outputs near 0."""

    name = "wasserstein"

    def __init__(self, drift: float = 0.0):
        if not drift >= 0:
            raise ConfigError(f"loss.drift={drift} must be >= 0 (0: no drift term)")
        self.drift = drift
        self.name = "wasserstein_drift" if drift else "wasserstein"  # as the loss config's

    def d_loss(self, real_logits, fake_logits):
        loss = wasserstein_d_loss(real_logits, fake_logits)
        return loss + self.drift * real_logits.square().mean() if self.drift else loss

    def __repr__(self) -> str:
        return f"WassersteinLoss(drift={self.drift})" if self.drift else "WassersteinLoss()"

    def g_loss(self, fake_logits, real_logits=None):
        return wasserstein_g_loss(fake_logits)


class LSGANLoss(AdversarialLoss):
    name = "lsgan"

    def d_loss(self, real_logits, fake_logits):
        return lsgan_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return lsgan_g_loss(fake_logits)


class RelativisticLoss(AdversarialLoss):
    """Base of the relativistic losses: the generator's loss needs the real logits."""

    needs_real_logits = True

    def require_real_logits(self, real_logits: torch.Tensor | None) -> torch.Tensor:
        if real_logits is None:
            raise ConfigError(
                f"loss={self.name} compares fakes with reals in the generator step, but the "
                "model's g_loss hook gave it no real logits; a model subclass that overrides "
                "g_loss must take `real=None` and pass it on (see GANModule.g_loss), or use "
                "a loss such as bce, hinge, wasserstein or lsgan"
            )
        return real_logits


class RSGANLoss(RelativisticLoss):
    """Relativistic standard GAN (Jolicoeur-Martineau, 2018); see `rsgan_d_loss`."""

    name = "rsgan"

    def d_loss(self, real_logits, fake_logits):
        return rsgan_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return rsgan_g_loss(fake_logits, self.require_real_logits(real_logits))


class RaGANLoss(RelativisticLoss):
    """Relativistic average standard GAN, RaSGAN (Jolicoeur-Martineau, 2018); see `ragan_d_loss`."""

    name = "ragan"

    def d_loss(self, real_logits, fake_logits):
        return ragan_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return ragan_g_loss(fake_logits, self.require_real_logits(real_logits))


class RaLSGANLoss(RelativisticLoss):
    """Relativistic average least-squares GAN (Jolicoeur-Martineau, 2018); see `ralsgan_d_loss`."""

    name = "ralsgan"

    def d_loss(self, real_logits, fake_logits):
        return ralsgan_d_loss(real_logits, fake_logits)

    def g_loss(self, fake_logits, real_logits=None):
        return ralsgan_g_loss(fake_logits, self.require_real_logits(real_logits))

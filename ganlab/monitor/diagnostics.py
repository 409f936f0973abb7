"""Per-player training diagnostics, computed on the device on logging steps only: gradient
norms (and clipping by global norm), the discriminator's accuracy on real and fake samples, the
real/fake logit gap, the generator's update size and the EMA generator's distance from the raw
one. Nothing here reads a value on the host."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ganlab.errors import ConfigError
from ganlab.losses.adversarial import AdversarialLoss, BCELoss, HingeLoss, LSGANLoss


def check_grad_clip(option: str, value: float | None) -> float | None:
    """A clipping bound: a positive number, or None for no clipping."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"{option}={value!r} must be a number > 0 (the largest global gradient norm of the "
            "player's parameters), or null for no clipping"
        )
    return float(value)


def gradient_norm(params: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """The global L2 norm of the parameters' gradients (those that have one), on their device;
    None when no parameter has a gradient."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return None
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def clip_gradients(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor | None:
    """Scale the gradients so that their global norm is at most `max_norm` (torch's
    clip_grad_norm_, no host sync); returns the norm before clipping."""
    if not any(p.grad is not None for p in params):
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm).float()


def decision_threshold(
    loss: AdversarialLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor | float:
    """Where D's output separates "real" from "fake": 0 for the BCE and hinge losses, 0.5 for
    LSGAN (targets 1 and 0); the midpoint of the batch means for losses whose output has no
    absolute meaning (Wasserstein critics, relativistic losses), so accuracy there says how
    well D ranks reals above fakes."""
    if isinstance(loss, BCELoss | HingeLoss):
        return 0.0
    if isinstance(loss, LSGANLoss):
        return 0.5
    return (real_logits.mean() + fake_logits.mean()) / 2


def logit_diagnostics(
    loss: AdversarialLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """D's accuracy on the real and on the fake batch, and the gap between their mean logits."""
    real_logits, fake_logits = real_logits.detach().flatten(), fake_logits.detach().flatten()
    threshold = decision_threshold(loss, real_logits, fake_logits)
    return {
        "monitor/d_acc_real": (real_logits > threshold).float().mean(),
        "monitor/d_acc_fake": (fake_logits < threshold).float().mean(),
        "monitor/logit_gap": real_logits.mean() - fake_logits.mean(),
    }


def relative_distance(
    moved: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]
) -> torch.Tensor:
    """||moved - reference|| / ||moved|| over all tensors together (global L2 norms)."""
    moved = [t.detach().float() for t in moved]
    difference = torch._foreach_sub(moved, [t.detach().float() for t in reference])
    numerator = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(difference)))
    denominator = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(moved)))
    return numerator / denominator.clamp_min(torch.finfo(torch.float32).tiny)

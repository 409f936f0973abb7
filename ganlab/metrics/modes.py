"""Mode coverage of 2D Gaussian mixtures, by the PacGAN protocol (Lin et al., 2018).

A generated point is high quality when it lies within `threshold_stds` standard deviations of
its nearest mode; a mode is captured when at least one high-quality point is nearest to it; the
reverse KL compares the high-quality points' distribution over modes, q, with the uniform
distribution of the data: KL(q || uniform) = sum_i q_i log(q_i K).
"""

from __future__ import annotations

import math

import torch

MODE_METRICS = ("modes", "hq_frac", "rev_kl")


def mode_coverage(
    points: torch.Tensor, centers: torch.Tensor, std: float, threshold_stds: float = 3.0
) -> dict[str, float]:
    """`modes` captured (count), `hq_frac` (fraction of high-quality points, 0..1) and `rev_kl`
    (nats; 0 for a perfectly balanced cover, log K for one mode, inf with no high-quality point)."""
    if points.dim() != 2 or points.shape[1] != centers.shape[1]:
        raise ValueError(
            f"points of shape {tuple(points.shape)} do not match centers of dimension "
            f"{centers.shape[1]}; expected (N, {centers.shape[1]})"
        )
    distances = torch.cdist(points.double(), centers.double())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= threshold_stds * std
    counts = torch.bincount(nearest[high_quality], minlength=len(centers)).double()
    total = counts.sum()
    if total == 0:
        rev_kl = math.inf
    else:
        q = counts[counts > 0] / total
        rev_kl = float((q * (q * len(centers)).log()).sum())
    return {
        "modes": int((counts > 0).sum()),
        "hq_frac": float(high_quality.double().mean()),
        "rev_kl": rev_kl,
    }

"""StyleGAN2's generator regularizer and lazy-regularization helpers (Karras et al., 2020;
NVlabs/stylegan2-ada-pytorch training/loss.py and training_loop.py)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganlab.errors import ConfigError


def lazy_regularization_adam(
    lr: float, betas: tuple[float, float], interval: int | None
) -> tuple[float, tuple[float, float]]:
    """Adam settings for a player whose regularizer runs as its own phase every `interval`
    steps (its loss weighted by `interval`): lr * k/(k+1) and beta ** (k/(k+1)), so that k+1
    updates per k steps move as k plain ones (official cifar: G 0.002, D 0.0023529).
    None (no separate regularization phase): unchanged."""
    if interval is None:
        return lr, (betas[0], betas[1])
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ConfigError(f"regularization interval={interval!r} must be null or an integer >= 1")
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


def path_lengths(
    images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample ||J_w^T y|| (y ~ N(0, 1/(H W)) per pixel), the mean over the ws rows of the
    squared norm, square-rooted: sqrt(mean_rows ||d(sum images * y)/dw_row||^2). Kept in the
    graph (create_graph) so that the penalty trains G. `ws` must be an input of `images`."""
    if noise is None:
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


class PathLengthPenalty(nn.Module):
    """(L - a)^2 per sample, with L the path length and a = `pl_mean`, an EMA of the batch-mean
    L with rate `decay` (a buffer, saved in checkpoints). As the official code, the penalty
    uses the updated mean, which still depends on this batch (not detached)."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        if not 0.0 < decay <= 1.0:
            raise ConfigError(f"path-length decay={decay} must be in (0, 1]")
        self.decay = decay
        self.register_buffer("pl_mean", torch.zeros([]))

    def forward(
        self, images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        lengths = path_lengths(images, ws, noise)
        pl_mean = self.pl_mean.lerp(lengths.mean().to(self.pl_mean.dtype), self.decay)
        with torch.no_grad():
            self.pl_mean.copy_(pl_mean.detach())
        return (lengths - pl_mean).square()

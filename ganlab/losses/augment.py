"""DiffAugment (Zhao et al., 2020): differentiable augmentations of every discriminator input.

The same random transformations are applied to real and fake images on their way into D, and
gradients flow through them to the generator, so D cannot overfit a small dataset without
leaking the augmentations into the samples. Randomness comes from torch's global generator, so
checkpoints resume it exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganlab.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One random factor per image, broadcastable over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5)."""
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros."""
    batch, _, height, width = x.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (batch, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device).view(1, -1, 1) - dy
    cols = torch.arange(width, device=x.device).view(1, 1, -1) - dx
    inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).unsqueeze(1)
    index = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)  # (B, H, W)
    flat = x.flatten(2)
    index = index.flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
    shifted = flat.gather(2, index).view_as(x)
    return shifted * inside


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` of the image's side at a random place in each image."""
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height - cut_h + 1, (batch, 1, 1), device=x.device)
    left = torch.randint(0, width - cut_w + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    hole = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
    return x * (~hole).unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def require_images(x: torch.Tensor, option: str) -> None:
    """Refuse a D input that is not a batch of images: passing 2D points through unchanged
    would make the augmentation a silent no-op."""
    if x.dim() != 4:
        raise ConfigError(
            f"augment={option} transforms images of shape (B, C, H, W), but the discriminator "
            f"input has shape {tuple(x.shape)}; use augment=none for data that are not images "
            "(toy_ring, toy_grid)"
        )


def check_augment(augment: Any) -> Any:
    """The augmentation a model was built with (None: none). One left unbuilt (no `_target_`:
    an experiment's settings for an option the command line turned off) is a ConfigError."""
    if augment is not None and not callable(augment):
        raise ConfigError(
            f"augment={augment} is not an augmentation (it has no _target_): it sets options of "
            "an augmentation that is not selected; select one (augment=diffaugment) or drop "
            "the setting"
        )
    return augment


class DiffAugment(nn.Module):
    """`policy`: comma-separated transforms applied in order, e.g. "color,translation,cutout"."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        names = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in _TRANSFORMS]
        if unknown or not names:
            raise ValueError(f"DiffAugment policy={policy!r}: accepted transforms are {POLICIES}")
        self.policy = names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_images(x, "diffaugment")
        for name in self.policy:
            x = _TRANSFORMS[name](x)
        return x

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)}"

"""2D Gaussian mixtures of the PacGAN / VEEGAN mode-collapse protocol."""

from __future__ import annotations

import math

import torch

from ganlab.data.base import (
    DataError,
    GANDataModule,
    TensorDictDataset,
    check_choice,
    check_int,
    check_num_classes,
)

LAYOUTS = ("ring", "grid")
DEFAULT_STD = {"ring": 0.01, "grid": 0.05}


def ring_centers(num_modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """(num_modes, 2) points evenly spaced on a circle, the first at (radius, 0)."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    centers = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return centers.round(decimals=12).float()  # cos(pi/2) is 6e-17, not 0


def grid_centers(spacing: float = 2.0, size: int = 5) -> torch.Tensor:
    """(size**2, 2) points of a centred square grid: {-4,-2,0,2,4}^2 by default, row-major."""
    axis = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) * spacing
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1).float()


class GaussianMixture2DDataModule(GANDataModule):
    """Points from equal-weight isotropic Gaussians; `label` is the component index.

    ring: 8 modes on a circle of `radius` (std 0.01); grid: 25 modes at {-4,-2,0,2,4}^2
    (std 0.05). Points are drawn once from `seed`; split "test" is an independent draw.
    """

    splits = ("train", "test")

    def __init__(
        self,
        layout: str = "ring",
        num_samples: int = 100_000,
        std: float | None = None,
        radius: float = 1.0,
        dim: int = 2,
        num_classes: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_choice("layout", layout, LAYOUTS)
        check_int("num_samples", num_samples, 1)
        if dim != 2:
            raise DataError(f"dim={dim!r} is not supported: the toy mixtures are 2D; set dim=2")
        std = DEFAULT_STD[layout] if std is None else std
        if not std > 0:
            raise DataError(f"std={std!r} must be > 0 (default {DEFAULT_STD[layout]})")
        if layout == "grid" and radius != 1.0:
            raise DataError(f"radius={radius!r} applies to layout='ring' only; remove it")
        if not radius > 0:
            raise DataError(f"radius={radius!r} must be > 0")
        self.layout = layout
        self.num_samples = num_samples
        self.std = float(std)
        self.radius = float(radius)
        self.centers = ring_centers(8, radius) if layout == "ring" else grid_centers()
        self.name = f"toy_{layout}"
        self.data_key = "point"
        self.default_feature_extractor = None
        self.num_classes = check_num_classes(num_classes, len(self.centers), self.name)
        self.sample_shape = (2,)

    def identity(self) -> dict:
        return {**super().identity(), "std": self.std, "radius": self.radius, "seed": self.seed}

    def _load(self, split: str) -> TensorDictDataset:
        # a separate generator per split, so the data never depends on shuffling or on each other
        generator = torch.Generator().manual_seed(self.seed * 2 + self.splits.index(split))
        labels = torch.randint(len(self.centers), (self.num_samples,), generator=generator)
        noise = torch.randn(self.num_samples, 2, generator=generator)
        points = self.centers[labels] + self.std * noise
        return TensorDictDataset(point=points, label=labels)

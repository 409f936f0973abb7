"""Views of a trained generator: a latent interpolation grid (slerp between fixed latents) and a
memorisation check (nearest training images of generated samples in a cheap feature space).

The feature space of the monitor is downsampled pixels: each image average-pooled to at most
8x8 per channel. It needs no weights and costs next to nothing, it is what copying shows up in
(a memorised sample is close to its training image in every layout-level statistic), and it is
blind to fine texture, so it finds near-copies, not semantic neighbours.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FEATURE_SIZE = 8
FEATURE_NAME = f"pixels average-pooled to at most {FEATURE_SIZE}x{FEATURE_SIZE} per channel"


def cheap_features(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images -> (N, C * s * s) features, s = min(8, H, W); 2D points pass as is."""
    if images.dim() != 4:
        return images.flatten(1).float()
    size = min(FEATURE_SIZE, *images.shape[-2:])
    return F.adaptive_avg_pool2d(images.float(), size).flatten(1)


def diversity(samples: torch.Tensor) -> float:
    """Mean pairwise L2 distance of the samples' cheap features."""
    return float(torch.pdist(cheap_features(samples)).mean())


def modes_reached(points: torch.Tensor, centers: torch.Tensor) -> tuple[int, float]:
    """How many modes of a 2D mixture a batch of points reaches, and the share of points near a
    mode. A point is near its nearest mode when within half the smallest distance between
    modes; a mode is reached when at least a quarter of its fair share of the points (1 / (4 K))
    are near it. Unlike the PacGAN count (ganlab.metrics.modes) it ignores how precisely points
    hit a mode, so a generator still learning the modes' width is not taken for a collapsed
    one."""
    between = torch.cdist(centers.double(), centers.double())
    radius = between[between > 0].min() / 2
    distance, nearest = torch.cdist(points.double(), centers.double()).min(dim=1)
    near = distance <= radius
    counts = torch.bincount(nearest[near], minlength=len(centers))
    reached = int((counts >= len(points) / (4 * len(centers))).sum())
    return reached, float(near.double().mean())


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of `a` and `b` at fractions `t` (shape (T,)):
    returns (len(a), T, D). Linear where the two are (nearly) parallel."""
    a_unit = a / a.norm(dim=1, keepdim=True)
    b_unit = b / b.norm(dim=1, keepdim=True)
    omega = torch.arccos((a_unit * b_unit).sum(1).clamp(-1, 1))[:, None, None]  # (N, 1, 1)
    t = t[None, :, None]
    sin_omega = torch.sin(omega)
    parallel = sin_omega.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    weight_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe)
    weight_b = torch.where(parallel, t, torch.sin(t * omega) / safe)
    return weight_a * a[:, None] + weight_b * b[:, None]


@torch.no_grad()
def interpolation_images(model, rows: int, steps: int, seed: int) -> torch.Tensor:
    """rows x steps images: row r walks from latent r to latent rows + r (the model's seeded
    latents) by slerp; conditional models keep label r mod classes along row r. EMA generator
    when there is one, BatchNorm in eval mode."""
    starts = model.latents(rows, seed)
    ends = model.latents(rows, seed, start=rows)
    path = slerp(starts, ends, torch.linspace(0, 1, steps)).reshape(rows * steps, -1)
    labels = None
    if getattr(model, "conditional", False):
        labels = [(index // steps) % model.num_classes for index in range(rows * steps)]
    conditions = model.sample_conditions(rows * steps, labels)
    network = model.sampling_generator(use_ema=True)
    was_training = network.training
    network.eval()
    try:
        cond = None if conditions is None else conditions.to(model.device)
        return model.generate(path.to(model.device), cond, network).float().cpu()
    finally:
        network.train(was_training)


def memorisation(
    samples: torch.Tensor,
    train: torch.Tensor,
    held_out: torch.Tensor,
    quantile: float = 0.05,
    neighbours: int = 3,
) -> tuple[dict, torch.Tensor]:
    """For each sample its nearest training images in the cheap feature space, and the share of
    samples closer to a training image than the `quantile` of held-out real images are (a
    held-out image is no copy: about `quantile` of them come that close by chance, so a share
    well above `quantile` suggests copying). Returns the summary and the neighbours' indices
    (N, neighbours)."""
    train_features = cheap_features(train)
    distances = torch.cdist(cheap_features(samples), train_features)
    nearest, indices = distances.topk(min(neighbours, len(train)), dim=1, largest=False)
    held_out_nearest = torch.cdist(cheap_features(held_out), train_features).min(dim=1).values
    threshold = float(torch.quantile(held_out_nearest.double(), quantile))
    share = float((nearest[:, 0] < threshold).double().mean())
    summary = {
        "share_closer_than_held_out": share,
        "held_out_quantile": quantile,
        "distance_threshold": threshold,
        "median_sample_distance": float(nearest[:, 0].median()),
        "median_held_out_distance": float(held_out_nearest.median()),
        "num_samples": len(samples),
        "num_train": len(train),
        "num_held_out": len(held_out),
        "feature_space": FEATURE_NAME,
    }
    return summary, indices


def read_images(dataset, count: int, seed: int, key: str) -> torch.Tensor:
    """`count` items (or all, if fewer) of a dict-yielding dataset, picked by `seed`."""
    count = min(count, len(dataset))
    indices = np.random.default_rng(seed).choice(len(dataset), size=count, replace=False)
    return torch.stack([dataset[int(i)][key] for i in np.sort(indices)])

"""Scatter plots of 2D samples over the real mixture's modes, drawn with PIL (no matplotlib)."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
SAMPLE_COLOR = (31, 119, 180)  # blue dots
CENTER_COLOR = (214, 39, 40)  # red crosses, drawn over the dots
TEXT_COLOR = (0, 0, 0)
MARGIN = 0.25  # room around the modes, as a fraction of their extent


def plot_bounds(centers: torch.Tensor | None, points: torch.Tensor) -> tuple[float, float, float]:
    """(x centre, y centre, half width) of a square frame around the modes, or around the points
    when there are no modes. Framing by the modes keeps every epoch's picture on the same axes."""
    anchor = centers if centers is not None and len(centers) else points
    anchor = anchor[torch.isfinite(anchor).all(dim=1)].double()
    if not len(anchor):
        return 0.0, 0.0, 1.0
    lo, hi = anchor.min(dim=0).values, anchor.max(dim=0).values
    middle = (lo + hi) / 2
    half = float((hi - lo).max()) / 2
    half = half * (1 + 2 * MARGIN) if half > 0 else 1.0
    return float(middle[0]), float(middle[1]), half


def to_pixels(points: torch.Tensor, bounds: tuple[float, float, float], size: int) -> torch.Tensor:
    """(N, 2) points -> (N, 2) integer (column, row) pixels; y points up, as on paper. Pixels
    outside the picture are clamped to -1 or `size` (off by one), so far-off points stay off."""
    cx, cy, half = bounds
    scale = (size - 1) / (2 * half)
    columns = (points[:, 0].double() - (cx - half)) * scale
    rows = ((cy + half) - points[:, 1].double()) * scale
    return torch.stack([columns, rows], dim=1).clamp(-1, size).round().long()


def scatter_plot(
    points: torch.Tensor,
    centers: torch.Tensor | None = None,
    size: int = 512,
    title: str = "",
) -> Image.Image:
    """A `size` x `size` RGB picture: each point a 3x3 blue dot, each mode centre a red cross.
    Points outside the frame are counted in the caption rather than drawn."""
    points = points.detach().cpu().reshape(len(points), -1)
    if points.shape[1] != 2:
        raise ValueError(f"scatter_plot draws 2D points, got shape {tuple(points.shape)}")
    centers = None if centers is None else centers.detach().cpu()
    bounds = plot_bounds(centers, points)
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    pixels = to_pixels(points, bounds, size)
    inside = ((pixels >= 0) & (pixels < size)).all(dim=1) & torch.isfinite(points).all(dim=1)
    for column, row in pixels[inside].tolist():
        draw.rectangle((column - 1, row - 1, column + 1, row + 1), fill=SAMPLE_COLOR)
    if centers is not None:
        arm = max(3, size // 80)
        for column, row in to_pixels(centers, bounds, size).tolist():
            draw.line((column - arm, row, column + arm, row), fill=CENTER_COLOR, width=2)
            draw.line((column, row - arm, column, row + arm), fill=CENTER_COLOR, width=2)
    outside = len(points) - int(inside.sum())
    caption = f"{title}  " if title else ""
    caption += f"{len(points)} samples" + (f", {outside} outside the frame" if outside else "")
    draw.text((4, 4), caption, fill=TEXT_COLOR)
    return image

"""The fixed classifier of the classification accuracy score and of `ganlab-augment`.

A small CNN, the same for every run at a given image shape, so that accuracies measured on
different generators (or against real data) compare a data source, never a network choice.
"""

from __future__ import annotations

import torch
from torch import nn

# The final feature map is pooled to this size, whatever the resolution.
POOLED_SIZE = 4


class SmallCNN(nn.Module):
    """Three 3x3 conv + ReLU blocks (width, 2 width, 2 width channels), each of stride 2 while
    the map is larger than 4x4, an adaptive average pool to 4x4, then a 128-unit ReLU layer and
    a linear layer to the class logits. No batch norm and no dropout: nothing in it depends on
    the batch or on train/eval mode. Strided convolutions keep it cheap on a CPU (about 0.6 M
    multiply-adds per 32x32 gray image at width 16)."""

    def __init__(
        self,
        channels: int,  # image channels: 1 (gray) or 3 (RGB)
        resolution: int,  # image height and width
        num_classes: int,  # size of the logits
        width: int = 16,  # channels of the first conv block
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, in_channels = resolution, channels
        for out_channels in (width, 2 * width, 2 * width):
            stride = 2 if size > POOLED_SIZE else 1
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride, padding=1), nn.ReLU()]
            size, in_channels = -(-size // stride), out_channels  # ceil, as padding=1 gives
        layers += [nn.AdaptiveAvgPool2d(POOLED_SIZE), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(in_channels * POOLED_SIZE**2, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, channels, resolution, resolution) in [-1, 1] -> logits (N, num_classes)."""
        return self.head(self.body(images))

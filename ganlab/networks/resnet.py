"""SNGAN's ResNet generator and discriminator (Miyato et al., 2018; CIFAR-10 architecture).

32x32: G is linear -> 4x4 -> 3 upsampling blocks -> BN-ReLU-conv-tanh; D is an optimized block
and one more downsampling block to 8x8, two blocks at 8x8, ReLU, global sum pooling, linear.
64x64 adds one upsampling block to G and one downsampling block to D, at the same width.
With `num_classes`, G's blocks use class-conditional BatchNorm and D adds the projection term
of Miyato & Koyama (2018). Init follows the paper's code: Xavier-uniform, gain sqrt(2) inside
residual branches (they feed a ReLU), gain 1 elsewhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.networks.layers import ConditionalBatchNorm2d, spectral_norm_

SUPPORTED_RESOLUTIONS = (32, 64)


def _num_resamplings(resolution: int, network: str) -> int:
    """How many 2x up/downsamplings separate the image from the 4x4 (G) or 8x8 (D) grid."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"{network} resolution={resolution} is not supported; accepted: "
            f"{SUPPORTED_RESOLUTIONS} (set data.resolution to one of them)"
        )
    return int(math.log2(resolution)) - 2


def _check_labels(network: str, num_classes: int | None, labels: torch.Tensor | None) -> None:
    # A silent mismatch would train an unconditional model under a conditional name, or vice versa.
    if num_classes is None and labels is not None:
        raise ValueError(f"{network} is unconditional (num_classes=None) but was given labels")
    if num_classes is not None and labels is None:
        raise ValueError(f"{network} has num_classes={num_classes}: forward needs labels")


def _conv(in_channels: int, out_channels: int, kernel_size: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(in_features: int, out_features: int) -> nn.Linear:
    linear = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _normalize(bn: nn.Module, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return bn(h, labels) if isinstance(bn, ConditionalBatchNorm2d) else bn(h)


class GeneratorBlock(nn.Module):
    """BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, plus a learned 1x1 conv of the upsampled input."""

    def __init__(
        self,
        in_channels: int,  # channels of the input
        out_channels: int,  # channels of the output, at twice the input's side
        num_classes: int | None = None,  # set: class-conditional BatchNorm
    ):
        super().__init__()
        self.bn1 = self._norm(in_channels, num_classes)
        self.conv1 = _conv(in_channels, out_channels, 3, math.sqrt(2))
        self.bn2 = self._norm(out_channels, num_classes)
        self.conv2 = _conv(out_channels, out_channels, 3, math.sqrt(2))
        self.shortcut = _conv(in_channels, out_channels, 1, 1.0)

    @staticmethod
    def _norm(channels: int, num_classes: int | None) -> nn.Module:
        if num_classes is None:
            return nn.BatchNorm2d(channels)
        return ConditionalBatchNorm2d(channels, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(_upsample(F.relu(_normalize(self.bn1, x, labels))))
        h = self.conv2(F.relu(_normalize(self.bn2, h, labels)))
        return h + self.shortcut(_upsample(x))


class ResNetGenerator(nn.Module):
    """z (+ labels) -> 4x4 -> residual upsampling blocks -> BN-ReLU-conv3x3-tanh image."""

    def __init__(
        self,
        latent_dim: int = 128,  # size of the noise vector z
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # output side, 32 or 64 (from the data config)
        base_width: int = 256,  # channels of every block (256 in the paper's CIFAR-10 model)
        num_classes: int | None = None,  # set: blocks use class-conditional BatchNorm
    ):
        super().__init__()
        num_blocks = _num_resamplings(resolution, "ResNetGenerator")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.base_width = base_width
        self.linear = _linear(latent_dim, 4 * 4 * base_width)
        self.blocks = nn.ModuleList(
            GeneratorBlock(base_width, base_width, num_classes) for _ in range(num_blocks)
        )
        self.bn = nn.BatchNorm2d(base_width)  # unconditional, as in the paper's code
        self.to_image = _conv(base_width, channels, 3, 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels("ResNetGenerator", self.num_classes, labels)
        h = self.linear(z.flatten(1)).view(z.shape[0], self.base_width, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.to_image(F.relu(self.bn(h))))


class OptimizedBlock(nn.Module):
    """D's first block, on the image: conv3x3-ReLU-conv3x3-avgpool, plus avgpool-conv1x1.
    No ReLU before the first conv: the image is not an activation."""

    def __init__(
        self,
        in_channels: int,  # image channels
        out_channels: int,  # channels of the output, at half the input's side
    ):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, math.sqrt(2))
        self.conv2 = _conv(out_channels, out_channels, 3, math.sqrt(2))
        self.shortcut = _conv(in_channels, out_channels, 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class DiscriminatorBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3(-avgpool), plus a 1x1 conv(-avgpool) shortcut when the shape
    changes and the identity otherwise."""

    def __init__(
        self,
        in_channels: int,  # channels of the input
        out_channels: int,  # channels of the output
        downsample: bool,  # halve the side with a 2x2 average pool
    ):
        super().__init__()
        self.downsample = downsample
        self.conv1 = _conv(in_channels, in_channels, 3, math.sqrt(2))
        self.conv2 = _conv(in_channels, out_channels, 3, math.sqrt(2))
        learned = downsample or in_channels != out_channels
        self.shortcut = _conv(in_channels, out_channels, 1, 1.0) if learned else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = self.shortcut(x)
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class ResNetDiscriminator(nn.Module):
    """image (+ labels) -> residual blocks down to 8x8 -> ReLU -> global sum pool -> linear,
    plus the projection <embed(y), h> when conditional -> one logit per sample (B,)."""

    def __init__(
        self,
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # input side, 32 or 64 (from the data config)
        base_width: int = 128,  # channels of every block (128 in the paper's CIFAR-10 model)
        num_classes: int | None = None,  # set: add the projection term for the labels
        spectral_norm: bool = True,  # the spectral-norm switch for D (SNGAN's Lipschitz bound)
    ):
        super().__init__()
        downsamplings = _num_resamplings(resolution, "ResNetDiscriminator") - 1  # to 8x8
        self.num_classes = num_classes
        blocks: list[nn.Module] = [OptimizedBlock(channels, base_width)]
        blocks += [
            DiscriminatorBlock(base_width, base_width, downsample=True)
            for _ in range(downsamplings - 1)
        ]
        blocks += [DiscriminatorBlock(base_width, base_width, downsample=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.linear = _linear(base_width, 1)
        self.embed: nn.Embedding | None = None
        if num_classes is not None:
            self.embed = nn.Embedding(num_classes, base_width)
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels("ResNetDiscriminator", self.num_classes, labels)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # sum, not mean: the paper's pooling
        logits = self.linear(h).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h).sum(dim=1)
        return logits

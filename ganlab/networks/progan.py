"""Progressive growing of GANs (Karras et al., 2018), after tkarras/progressive_growing_of_gans
(networks.py G_paper/D_paper; the Theano branch for the CIFAR-10 settings): equalized learning
rate, pixel norm, minibatch stddev, and a generator and discriminator that grow from 4x4 by one
level (a doubling) at a time, each new level faded in by `alpha`.

Both networks always work at the data's full resolution, as the official code does: the
generator's image at the current level is upsampled (nearest) to the full size, and the
discriminator average-pools its full-size input down to the current level. Sampling, grids
and scores therefore work at any point of training. The level and alpha are set by the
training module (`set_growth`) and saved with the weights.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.networks.stylegan2_layers import MinibatchStdLayer

START_RESOLUTION = 4
SQRT2 = math.sqrt(2)  # the He gain of leaky-ReLU layers, as the official code


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit mean square over channels."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling, as the official upscale2d."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling (average pooling), as the official downscale2d."""
    return x if factor == 1 else F.avg_pool2d(x, factor)


class EqualizedLinear(nn.Module):
    """Dense layer whose stored weights are N(0, 1) and scaled at run time by gain/sqrt(fan_in)
    (the He constant): Adam then moves every layer at the same relative speed."""

    def __init__(self, in_features: int, out_features: int, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """Same-padded conv with N(0, 1) weights scaled at run time by gain/sqrt(in * k * k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = SQRT2):
        super().__init__()
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.randn(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def level_count(resolution: int) -> int:
    """Levels above 4x4 for a power-of-two `resolution` >= 4 (32: 3 levels, 8, 16, 32)."""
    if resolution < START_RESOLUTION or resolution & (resolution - 1):
        raise ConfigError(
            f"progressive growing needs a power-of-two resolution >= 4, got data.resolution="
            f"{resolution}"
        )
    return int(math.log2(resolution)) - 2


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


class GrowingNetwork(nn.Module):
    """What both players share: the current `level` (0: 4x4) and fade weight `alpha` of its
    newest level (1: fully in), in the state dict (`get_extra_state`) for checkpoints. The
    forward pass reads alpha from a tensor (`fade_weight`, updated in place) and never the
    Python float, so a compiled forward (`model.compile=true`) is not recompiled at each step of
    a fade, only when the level or the fading state changes."""

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.max_level = level_count(resolution)
        self.level, self.alpha, self.fade_in = 0, 1.0, False
        self.register_buffer("fade_weight", torch.ones(()), persistent=False)

    def set_growth(self, level: int, alpha: float) -> None:
        if not 0 <= level <= self.max_level or not 0.0 <= alpha <= 1.0:
            raise ConfigError(
                f"growth level={level}, alpha={alpha}: level must be in [0, {self.max_level}] "
                "(the data's resolution) and alpha in [0, 1]"
            )
        self.level, self.alpha = int(level), float(alpha)
        self.fade_in = self.level > 0 and self.alpha < 1.0
        with torch.no_grad():
            self.fade_weight.fill_(self.alpha)

    def fading(self) -> bool:
        return self.fade_in

    def active_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def active_parameters(self) -> list[nn.Parameter]:
        """The parameters the forward pass uses at the current level and alpha (the others get
        no gradient, and Adam keeps no state for them)."""
        return [p for module in self.active_modules() for p in module.parameters()]

    def get_extra_state(self) -> dict[str, float]:
        return {"level": self.level, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.set_growth(int(state["level"]), float(state["alpha"]))


class ProGANGenerator(GrowingNetwork):
    """z (pixel-normed) -> dense to 4x4 -> conv3x3, then per level nearest x2 upsampling and
    two conv3x3; every conv is followed by leaky ReLU (0.2) and pixel norm. A 1x1 toRGB per level
    (linear, gain 1). While a level fades in, its image is lerp(up(toRGB_old), toRGB_new, alpha)."""

    def __init__(
        self,
        latent_dim: int = 128,  # size of z (the CIFAR-10 run: 128)
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # final resolution, a power of two (from the data config)
        channel_base: int = 8192,  # channels at resolution r: min(channel_base / r, channel_max)
        channel_max: int = 128,
    ):
        super().__init__(resolution)
        self.latent_dim = latent_dim
        widths = [
            channels_at(START_RESOLUTION * 2**level, channel_base, channel_max)
            for level in range(self.max_level + 1)
        ]
        # A dense layer to 4x4 (the official 4x4 'full' conv from 1x1): gain sqrt(2)/4 as there.
        self.dense = EqualizedLinear(latent_dim, widths[0] * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([EqualizedConv2d(widths[0], widths[0], 3)])
        for level in range(1, self.max_level + 1):
            conv0 = EqualizedConv2d(widths[level - 1], widths[level], 3)
            self.blocks.append(
                nn.ModuleList([conv0, EqualizedConv2d(widths[level], widths[level], 3)])
            )
        self.to_rgb = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=1.0) for w in widths])

    def active_modules(self) -> list[nn.Module]:
        rgb = [self.to_rgb[self.level - 1]] if self.fading() else []
        return [self.dense, *self.blocks[: self.level + 1], self.to_rgb[self.level], *rgb]

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(F.leaky_relu(x, 0.2))

    def features(self, z: torch.Tensor, level: int) -> list[torch.Tensor]:
        """Feature maps of levels 0..level."""
        x = self._act(self.dense(pixel_norm(z)).reshape(z.shape[0], -1, 4, 4))
        out = [self._act(self.blocks[0](x))]
        for index in range(1, level + 1):
            conv0, conv1 = self.blocks[index]
            out.append(self._act(conv1(self._act(conv0(upsample(out[-1]))))))
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        level = self.level
        feats = self.features(z, level)
        image = self.to_rgb[level](feats[level])
        if self.fading():
            old = upsample(self.to_rgb[level - 1](feats[level - 1]))
            image = torch.lerp(old, image, self.fade_weight.to(image.dtype))
        return upsample(image, 2 ** (self.max_level - level))


class ProGANDiscriminator(GrowingNetwork):
    """Per level a 1x1 fromRGB (leaky ReLU), then conv3x3, conv3x3, 2x2 average pooling; at 4x4
    minibatch stddev, conv3x3, a dense layer over the 4x4 map (the official 4x4 valid conv) and a
    linear output. While a level fades in, the features entering the level below are
    lerp(fromRGB_old(avgpool(img)), block_new(fromRGB_new(img)), alpha). No normalization."""

    def __init__(
        self,
        channels: int = 3,
        resolution: int = 32,
        channel_base: int = 8192,
        channel_max: int = 128,
        mbstd_group_size: int | None = None,  # samples per stddev group; null: the whole batch
    ):
        super().__init__(resolution)
        widths = [
            channels_at(START_RESOLUTION * 2**level, channel_base, channel_max)
            for level in range(self.max_level + 1)
        ]
        self.from_rgb = nn.ModuleList([EqualizedConv2d(channels, w, 1) for w in widths])
        self.blocks = nn.ModuleList([nn.Module()])  # level 0 is the epilogue below
        for level in range(1, self.max_level + 1):
            conv0 = EqualizedConv2d(widths[level], widths[level], 3)
            self.blocks.append(
                nn.ModuleList([conv0, EqualizedConv2d(widths[level], widths[level - 1], 3)])
            )
        if mbstd_group_size is not None and mbstd_group_size < 1:
            raise ConfigError(
                f"model.discriminator.mbstd_group_size={mbstd_group_size} must be an integer "
                ">= 1, or null for one group over the whole batch"
            )
        self.mbstd_group_size = mbstd_group_size
        # The whole batch: a group larger than any batch is clipped to the batch size.
        self.mbstd = MinibatchStdLayer(mbstd_group_size or sys.maxsize)
        self.conv = EqualizedConv2d(widths[0] + 1, widths[0], 3)
        self.dense = EqualizedLinear(widths[0] * 16, widths[0])
        self.out = EqualizedLinear(widths[0], 1, gain=1.0)

    def active_modules(self) -> list[nn.Module]:
        rgb = [self.from_rgb[self.level - 1]] if self.fading() else []
        blocks = self.blocks[1 : self.level + 1]
        return [self.from_rgb[self.level], *rgb, *blocks, self.conv, self.dense, self.out]

    def _from_rgb(self, images: torch.Tensor, level: int) -> torch.Tensor:
        x = downsample(images, 2 ** (self.max_level - level))
        return F.leaky_relu(self.from_rgb[level](x), 0.2)

    def _block(self, x: torch.Tensor, level: int) -> torch.Tensor:
        conv0, conv1 = self.blocks[level]
        x = F.leaky_relu(conv0(x), 0.2)
        return downsample(F.leaky_relu(conv1(x), 0.2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        level = self.level
        x = self._from_rgb(images, level)
        if level > 0:
            x = self._block(x, level)
            if self.fading():
                x = torch.lerp(self._from_rgb(images, level - 1), x, self.fade_weight.to(x.dtype))
            for lower in range(level - 1, 0, -1):
                x = self._block(x, lower)
        x = F.leaky_relu(self.conv(self.mbstd(x)), 0.2)
        x = F.leaky_relu(self.dense(x.flatten(1)), 0.2)
        return self.out(x).squeeze(1)

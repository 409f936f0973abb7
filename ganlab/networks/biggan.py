"""BigGAN (Brock et al., 2019) at 32x32: G(z, labels) -> image, D(image, labels) -> (B,).

G: linear z -> 4x4 -> 3 residual upsampling blocks (class-conditional BatchNorm, gain
1 + proj(c) and bias proj(c)) -> BN-ReLU-conv3x3-tanh. D: 4 residual blocks (down, down, -, -),
ReLU, global sum pooling, linear plus the projection <embed(y), h>. Spectral norm on every conv
and linear of both, and on D's class embedding; never on G's class embedding (the official code:
it "seems to randomly cripple G"). Optional SAGAN self-attention after one block of each.

Two CIFAR-10 recipes are kept apart, both set by constructor arguments:
- BigGAN-PyTorch's `scripts/launch_cifar_ema.sh` (the author's simpler one): G(latent_dim=128,
  width=256, shared_dim=0, hierarchical=False, attention_resolution=None, bn_eps=1e-5,
  sn_eps=1e-8, init="N02"), D(width=256, attention_resolution=None, sn_eps=1e-8, init="N02").
  Each CBN reads its gain and bias straight from a per-class table.
- StudioGAN's CIFAR10/BigGAN.yaml (the defaults here): G(latent_dim=80, width=384,
  shared_dim=128, hierarchical=True, attention_resolution=16, bn_eps=1e-4, sn_eps=1e-6,
  init="ortho"), D(width=192, attention_resolution=16, sn_eps=1e-6, init="ortho"). z is split
  into 4 chunks: chunk 0 feeds the linear, chunk i is concatenated with the shared class
  embedding to feed block i's CBN through spectrally normalized linears.
Biases start at zero in both (the author's code leaves PyTorch's default bias init).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

from ganlab.errors import ConfigError
from ganlab.networks.conditional import require_num_classes

SUPPORTED_RESOLUTIONS = (32,)
INITS = ("N02", "ortho", "xavier")
NUM_BLOCKS = 3  # G's upsampling blocks at 32x32: 4 -> 8 -> 16 -> 32
# D's blocks at 32x32: which ones halve the side, and the side after each.
D_DOWNSAMPLE = (True, True, False, False)
D_RESOLUTIONS = (16, 8, 8, 8)
G_RESOLUTIONS = (8, 16, 32)


def _check_choices(
    network: str, resolution: int, init: str, attention: int | None, accepted: tuple
) -> None:
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ConfigError(
            f"{network} resolution={resolution} is not supported; accepted: "
            f"{SUPPORTED_RESOLUTIONS} (set data.resolution to one of them)"
        )
    if init not in INITS:
        raise ConfigError(f"{network} init={init!r} is not known; accepted: {INITS}")
    if attention is not None and attention not in accepted:
        raise ConfigError(
            f"{network} attention_resolution={attention} is not the side of any block; "
            f"accepted: {sorted(set(accepted))} or null (no attention)"
        )


def _init_weights_(module: nn.Module, init: str) -> None:
    """The official init of every conv, linear and embedding weight (before spectral norm)."""
    for layer in module.modules():
        if not isinstance(layer, nn.Conv2d | nn.Linear | nn.Embedding):
            continue
        if init == "N02":
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif init == "ortho":
            nn.init.orthogonal_(layer.weight)
        else:
            nn.init.xavier_uniform_(layer.weight)
        if getattr(layer, "bias", None) is not None:
            nn.init.zeros_(layer.bias)


def _spectral_norm_(module: nn.Module, eps: float, kinds: tuple[type, ...]) -> None:
    """Spectral norm on the weight of every layer of `module` of one of `kinds`."""
    for layer in [m for m in module.modules() if isinstance(m, kinds)]:
        _torch_spectral_norm(layer, eps=eps)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class SelfAttention(nn.Module):
    """SAGAN's non-local block: theta, phi (C/8) and g (C/2) 1x1 convs, phi and g max-pooled
    2x2, softmax over the pooled positions, a 1x1 conv back to C, then `x + gamma * o` with
    gamma starting at 0, so a new block is the identity."""

    def __init__(self, channels: int):  # channels in and out; a multiple of 8
        super().__init__()
        if channels % 8 != 0:
            raise ConfigError(f"self-attention needs channels divisible by 8; got {channels}")
        self.theta = _conv(channels, channels // 8, 1, bias=False)
        self.phi = _conv(channels, channels // 8, 1, bias=False)
        self.g = _conv(channels, channels // 2, 1, bias=False)
        self.o = _conv(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, HW, HW/4): row p holds the weights position p gives the pooled positions."""
        theta = self.theta(x).flatten(2)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)
        return F.softmax(theta.transpose(1, 2) @ phi, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.max_pool2d(self.g(x), 2).flatten(2)
        attended = (g @ self.attention_map(x).transpose(1, 2)).view(x.shape[0], -1, *x.shape[2:])
        return x + self.gamma * self.o(attended)


class BigGANConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then `* (1 + gain(c)) + bias(c)`: c is a label (the
    projections are per-class tables) or a vector (the projections are bias-free linears)."""

    def __init__(
        self,
        num_features: int,  # channels normalized
        projection: Callable[[int], nn.Module],  # builds the c -> num_features gain/bias maps
        eps: float = 1e-5,  # BatchNorm's eps (1e-5 author's code, 1e-4 StudioGAN)
    ):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, affine=False)
        self.gain = projection(num_features)
        self.bias = projection(num_features)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(condition)[:, :, None, None]
        return self.bn(x) * gain + self.bias(condition)[:, :, None, None]


class GeneratorBlock(nn.Module):
    """CBN-ReLU-upsample-conv3x3-CBN-ReLU-conv3x3, plus upsample-conv1x1 of the input."""

    def __init__(
        self,
        in_channels: int,  # channels of the input
        out_channels: int,  # channels of the output, at twice the input's side
        projection: Callable[[int], nn.Module],  # the CBN's condition -> gain/bias maps
        bn_eps: float,  # the CBN's eps
    ):
        super().__init__()
        self.bn1 = BigGANConditionalBatchNorm2d(in_channels, projection, bn_eps)
        self.conv1 = _conv(in_channels, out_channels)
        self.bn2 = BigGANConditionalBatchNorm2d(out_channels, projection, bn_eps)
        self.conv2 = _conv(out_channels, out_channels)
        self.shortcut = _conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, condition)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), condition)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class BigGANGenerator(nn.Module):
    """z, labels -> image in [-1, 1]; see the module docstring for the two CIFAR recipes."""

    def __init__(
        self,
        latent_dim: int = 80,  # size of z (StudioGAN 80 = 4 chunks of 20; author 128)
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # output side (from the data config); 32 only
        num_classes: int | None = None,  # number of labels (from the data config)
        width: int = 384,  # channels of every block (StudioGAN 4*96; author 4*64)
        shared_dim: int = 128,  # size of the shared class embedding; 0: per-CBN class tables
        hierarchical: bool = True,  # split z over the linear and the blocks (needs shared_dim)
        attention_resolution: int | None = 16,  # self-attention after the block of this side
        bn_eps: float = 1e-4,  # BatchNorm eps (StudioGAN 1e-4; author 1e-5)
        sn_eps: float = 1e-6,  # spectral norm eps (StudioGAN 1e-6; author 1e-8)
        spectral_norm: bool = True,  # spectral norm on G's convs and linears
        init: str = "ortho",  # weight init: "ortho" (StudioGAN), "N02" (author), "xavier"
    ):
        super().__init__()
        _check_choices("BigGANGenerator", resolution, init, attention_resolution, G_RESOLUTIONS)
        self.num_classes = require_num_classes(num_classes)
        if hierarchical and shared_dim <= 0:
            raise ConfigError(
                "BigGANGenerator hierarchical=true concatenates z chunks with the shared class "
                f"embedding, but shared_dim={shared_dim}; set shared_dim > 0 (e.g. 128)"
            )
        slots = NUM_BLOCKS + 1 if hierarchical else 1
        if latent_dim % slots != 0:
            raise ConfigError(
                f"BigGANGenerator latent_dim={latent_dim} must split evenly into {slots} chunks "
                f"(the linear and {NUM_BLOCKS} blocks); accepted: multiples of {slots}, e.g. 80"
            )
        self.latent_dim, self.width, self.hierarchical = latent_dim, width, hierarchical
        self.chunk_size = latent_dim // slots
        self.shared = nn.Embedding(self.num_classes, shared_dim) if shared_dim > 0 else None
        # Each CBN's gain and bias: per-class tables, or bias-free linears of the condition.
        if self.shared is None:
            projection: Callable[[int], nn.Module] = partial(nn.Embedding, self.num_classes)
        else:
            condition_dim = shared_dim + (self.chunk_size if hierarchical else 0)
            projection = partial(nn.Linear, condition_dim, bias=False)
        self.linear = nn.Linear(self.chunk_size, 4 * 4 * width)
        self.blocks = nn.ModuleList(
            GeneratorBlock(width, width, projection, bn_eps) for _ in range(NUM_BLOCKS)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(width) if side == attention_resolution else nn.Identity()
            for side in G_RESOLUTIONS
        )
        self.bn = nn.BatchNorm2d(width, eps=bn_eps)
        self.to_image = _conv(width, channels)
        _init_weights_(self, init)
        if spectral_norm:  # not on G's embeddings (shared or per-CBN), as the official code
            _spectral_norm_(self, sn_eps, (nn.Conv2d, nn.Linear))

    def conditions(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list]:
        """(the linear's input, each block's CBN condition)."""
        if self.shared is None:
            return z, [labels] * NUM_BLOCKS
        shared = self.shared(labels)
        if not self.hierarchical:
            return z, [shared] * NUM_BLOCKS
        first, *rest = z.split(self.chunk_size, dim=1)
        return first, [torch.cat([shared, chunk], dim=1) for chunk in rest]

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z, conditions = self.conditions(z.flatten(1), labels)
        h = self.linear(z).view(z.shape[0], self.width, 4, 4)
        stages = zip(self.blocks, self.attentions, conditions, strict=True)
        for block, attention, condition in stages:
            h = attention(block(h, condition))
        return torch.tanh(self.to_image(F.relu(self.bn(h))))


class DiscriminatorBlock(nn.Module):
    """(ReLU-)conv3x3-ReLU-conv3x3(-avgpool) plus a shortcut: a 1x1 conv when the shape
    changes. The first block skips the leading ReLU (the image is not an activation) and pools
    before its 1x1 conv; the others convolve, then pool, as the official DBlock."""

    def __init__(
        self,
        in_channels: int,  # channels of the input
        out_channels: int,  # channels of the output (both convs: the "wide" D)
        downsample: bool,  # halve the side with a 2x2 average pool
        preactivation: bool,  # ReLU before the first conv (every block but the first)
    ):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = _conv(in_channels, out_channels)
        self.conv2 = _conv(out_channels, out_channels)
        learned = downsample or in_channels != out_channels
        self.shortcut = _conv(in_channels, out_channels, 1) if learned else nn.Identity()

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x) if self.preactivation else x)
        h = self._pool(self.conv2(F.relu(h)))
        skip = self._pool(self.shortcut(x)) if self.preactivation else self.shortcut(self._pool(x))
        return h + skip


class BigGANDiscriminator(nn.Module):
    """image, labels -> blocks -> ReLU -> global sum pool -> linear + <embed(y), h> -> (B,)."""

    def __init__(
        self,
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # input side (from the data config); 32 only
        num_classes: int | None = None,  # number of labels (from the data config)
        width: int = 192,  # channels of every block (StudioGAN 2*96; author 4*64)
        attention_resolution: int | None = 16,  # self-attention after the first block this side
        sn_eps: float = 1e-6,  # spectral norm eps (StudioGAN 1e-6; author 1e-8)
        spectral_norm: bool = True,  # spectral norm on every conv, linear and the embedding
        init: str = "ortho",  # weight init: "ortho" (StudioGAN), "N02" (author), "xavier"
    ):
        super().__init__()
        _check_choices("BigGANDiscriminator", resolution, init, attention_resolution, D_RESOLUTIONS)
        self.num_classes = require_num_classes(num_classes)
        in_channels = [channels] + [width] * (len(D_DOWNSAMPLE) - 1)
        layers: list[nn.Module] = []
        for index, (down, side) in enumerate(zip(D_DOWNSAMPLE, D_RESOLUTIONS, strict=True)):
            layers.append(DiscriminatorBlock(in_channels[index], width, down, index > 0))
            if side == attention_resolution and D_RESOLUTIONS.index(side) == index:
                layers.append(SelfAttention(width))
        self.blocks = nn.Sequential(*layers)
        self.linear = nn.Linear(width, 1)
        self.embed = nn.Embedding(self.num_classes, width)
        _init_weights_(self, init)
        if spectral_norm:
            _spectral_norm_(self, sn_eps, (nn.Conv2d, nn.Linear, nn.Embedding))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # sum, not mean, as SNGAN and BigGAN
        return self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


def check_truncation(threshold: float) -> float:
    """A truncation threshold is a positive number: |z_i| above it is redrawn."""
    valid = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not valid or not threshold > 0:
        raise ConfigError(
            f"truncation={threshold!r} must be a positive number (|z| above it is redrawn; "
            "BigGAN's sweeps use 0.04 to 2.0), or null for no truncation"
        )
    return float(threshold)


def truncated_noise(
    count: int, dim: int, threshold: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(count, dim) N(0, 1) draws on the CPU, each entry with |z| > threshold redrawn until
    none is left: BigGAN's truncation trick, a normal truncated to [-threshold, threshold]."""
    threshold = check_truncation(threshold)
    z = torch.randn(count, dim, generator=generator)
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > threshold
    return z


def truncated_latents(
    count: int, dim: int, threshold: float, seed: int, start: int = 0
) -> torch.Tensor:
    """Truncated latents seeded as `GANModule.latents`: row i depends only on (seed, start + i),
    so a sample set does not change with the batch size; with a threshold no draw exceeds, the
    rows are exactly the untruncated latents."""
    threshold = check_truncation(threshold)
    rows = []
    for index in range(start, start + count):
        rng = np.random.default_rng([seed, index])
        row = rng.standard_normal(dim)
        outside = np.abs(row) > threshold
        while outside.any():
            row[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(row) > threshold
        rows.append(row)
    return torch.from_numpy(np.stack(rows).astype(np.float32)).reshape(count, dim)

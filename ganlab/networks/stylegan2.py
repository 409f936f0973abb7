"""StyleGAN2 generator ('skip') and discriminator ('resnet' or 'orig') in plain PyTorch, after
NVlabs/stylegan2-ada-pytorch training/networks.py (layers and resampling: stylegan2_layers.py).

Channels at resolution r are min(channel_base // r, channel_max); the official CIFAR-10 spec
is channel_base=32768, channel_max=512 (512 everywhere), a 2-layer mapping network and
minibatch-stddev groups of 32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.networks.stylegan2_layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdLayer,
    SynthesisLayer,
    ToRGB,
    fir_filter,
    normalize_2nd_moment,
    upsample2d,
)

NOISE_MODES = ("random", "const", "none")
D_ARCHITECTURES = ("resnet", "orig")


def block_resolutions(resolution: int) -> list[int]:
    """4, 8, ..., resolution; the resolution must be a power of two >= 8."""
    log2 = int(math.log2(resolution)) if resolution > 0 else 0
    if resolution < 8 or 2**log2 != resolution:
        raise ConfigError(
            f"StyleGAN2 resolution={resolution} is not supported; accepted: a power of two "
            ">= 8 (set data.resolution)"
        )
    return [2**i for i in range(2, log2 + 1)]


def _num_classes(num_classes: int | None) -> int:
    """0 for unconditional (None or 0), else the number of labels."""
    if num_classes is None:
        return 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigError(f"num_classes={num_classes!r} must be null or an integer >= 0")
    return num_classes


def _one_hot(labels: torch.Tensor | None, num_classes: int, who: str) -> torch.Tensor | None:
    if num_classes == 0:
        return None
    if labels is None:
        raise ConfigError(
            f"the conditional StyleGAN2 {who} (num_classes={num_classes}) needs labels"
        )
    return F.one_hot(labels.long(), num_classes).float()


class MappingNetwork(nn.Module):
    """z (pixel-normalized) [+ normalized label embedding] -> w through `num_layers` lrelu
    FC layers at lr_multiplier. Tracks w_avg, the EMA of the batch-mean w, in train mode."""

    def __init__(
        self,
        z_dim: int,  # 0: labels only (the discriminator's cmap)
        num_classes: int,  # 0: unconditional
        w_dim: int,
        num_ws: int | None,  # rows of the output (None: one w per sample, shape (N, w_dim))
        num_layers: int = 8,  # official default 8; the cifar spec uses 2
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,  # None: no w_avg (no truncation)
    ):
        super().__init__()
        self.z_dim, self.num_classes, self.w_dim = z_dim, num_classes, w_dim
        self.num_ws, self.w_avg_beta = num_ws, w_avg_beta
        embed_features = w_dim if num_classes else 0
        if num_classes:
            self.embed = EqualizedLinear(num_classes, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                EqualizedLinear(i, o, activation="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(features[:-1], features[1:], strict=True)
            ]
        )
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor | None,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,  # w_avg + psi (w - w_avg); 1: off
        truncation_cutoff: int | None = None,  # truncate only the first rows (None: all)
        update_w_avg: bool = True,  # False for the second (style-mixing) call
    ) -> torch.Tensor:
        parts = [] if self.z_dim == 0 else [normalize_2nd_moment(z)]
        onehot = _one_hot(labels, self.num_classes, "mapping network")
        if onehot is not None:
            parts.append(normalize_2nd_moment(self.embed(onehot.to(self.embed.weight.dtype))))
        x = self.layers(torch.cat(parts, dim=1))
        if self.w_avg_beta is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ConfigError("truncation needs w_avg; this mapping has w_avg_beta=None")
            if x.dim() == 2 or truncation_cutoff is None:
                return self.w_avg.lerp(x, truncation_psi)
            truncated = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
            x = torch.cat([truncated, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [const | conv0 (up)], conv1, ToRGB added to the
    upsampled image of the block below. Uses num_conv + 1 rows of ws."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, conv_clamp):
        super().__init__()
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, 2, conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, 1, conv_clamp)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x, img, ws, noise_mode, fused):
        if x is None:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode, fused)
        y = self.torgb(x, ws[:, self.num_conv], fused)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image; num_ws = 2 log2(resolution) - 2. The ToRGB of a block
    shares its w row with the first conv of the next block, as in the official code."""

    def __init__(self, w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp):
        super().__init__()
        resolutions = block_resolutions(resolution)
        width = {r: min(channel_base // r, channel_max) for r in resolutions}
        self.blocks = nn.ModuleList(
            SynthesisBlock(
                width[r // 2] if r > 4 else 0, width[r], w_dim, r, img_channels, conv_clamp
            )
            for r in resolutions
        )
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def forward(self, ws, noise_mode="random", fused=None):
        if noise_mode not in NOISE_MODES:
            raise ConfigError(
                f"noise_mode={noise_mode!r} is not supported; accepted: {NOISE_MODES}"
            )
        if fused is None:
            fused = not self.training  # grouped conv at inference, as the official fp32 path
        x = img = None
        first = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, first : first + block.num_conv + 1], noise_mode, fused)
            first += block.num_conv
        return img


class StyleGAN2Generator(nn.Module):
    """Mapping network + skip synthesis network. forward(z, labels) -> images (N, C, H, W).

    Style mixing: in train mode with `style_mixing_prob` > 0, or whenever `mix_z` is given, the
    rows ws[:, cutoff:] come from a second latent (whose mapping call does not update w_avg).
    The cutoff is drawn U{1..num_ws-1} (kept at num_ws, i.e. no mixing, with 1 - prob) unless
    `mix_cutoff` gives it. Rows are selected by a mask, so the cutoff may be a device tensor.
    """

    def __init__(
        self,
        latent_dim: int = 512,  # size of z
        w_dim: int = 512,
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # a power of two >= 8 (from the data config)
        num_classes: int | None = None,  # labels (from the data config); null: unconditional
        channel_base: int = 32768,  # channels at resolution r: min(channel_base // r, max)
        channel_max: int = 512,
        mapping_layers: int = 8,  # official default 8; the cifar spec 2
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        style_mixing_prob: float = 0.0,  # official default 0.9; 0 for cifar
        conv_clamp: float | None = None,  # the official fp16 runs clamp at 256
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = _num_classes(num_classes)
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise ConfigError(f"style_mixing_prob={style_mixing_prob} must be in [0, 1]")
        self.style_mixing_prob = style_mixing_prob
        self.synthesis = SynthesisNetwork(
            w_dim, resolution, channels, channel_base, channel_max, conv_clamp
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            latent_dim,
            self.num_classes,
            w_dim,
            self.num_ws,
            mapping_layers,
            mapping_lr_multiplier,
            w_avg_beta,
        )

    def mixing_cutoff(self, device: torch.device | None = None) -> torch.Tensor:
        """U{1..num_ws-1} with probability style_mixing_prob, else num_ws (no mixing)."""
        cutoff = torch.randint(1, self.num_ws, [], device=device)
        mixed = torch.rand([], device=device) < self.style_mixing_prob
        return torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws))

    def styles(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        mix_z: torch.Tensor | None = None,
        mix_cutoff: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ws (N, num_ws, w_dim), with truncation and style mixing applied."""
        ws = self.mapping(z, labels, truncation_psi, truncation_cutoff)
        if mix_z is None and self.training and self.style_mixing_prob > 0:
            mix_z = torch.randn_like(z)
        if mix_z is None:
            return ws
        if mix_cutoff is None:
            mix_cutoff = self.mixing_cutoff(z.device)
        mixed = self.mapping(mix_z, labels, truncation_psi, truncation_cutoff, update_w_avg=False)
        rows = torch.arange(self.num_ws, device=ws.device).reshape(1, -1, 1)
        return torch.where(rows < torch.as_tensor(mix_cutoff, device=ws.device), ws, mixed)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        mix_z: torch.Tensor | None = None,
        mix_cutoff: int | torch.Tensor | None = None,
        noise_mode: str = "random",  # 'random', 'const' or 'none'
        fused: bool | None = None,  # None: fused (grouped conv) in eval mode only
    ) -> torch.Tensor:
        ws = self.styles(z, labels, truncation_psi, truncation_cutoff, mix_z, mix_cutoff)
        return self.synthesis(ws, noise_mode, fused)


class DiscriminatorBlock(nn.Module):
    """[fromRGB], conv3x3, conv3x3 down /2; 'resnet' adds a 1x1 down skip, both scaled
    by sqrt(1/2)."""

    def __init__(self, in_channels, tmp_channels, out_channels, img_channels, architecture, clamp):
        super().__init__()
        self.residual = architecture == "resnet"
        if in_channels == 0:
            self.fromrgb = EqualizedConv2d(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=clamp
            )
        self.conv0 = EqualizedConv2d(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=clamp
        )
        self.conv1 = EqualizedConv2d(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=clamp
        )
        if self.residual:
            self.skip = EqualizedConv2d(
                tmp_channels, out_channels, 1, bias=False, down=2, conv_clamp=clamp
            )

    def forward(self, x, img):
        if img is not None:
            x = self.fromrgb(img)
        if not self.residual:
            return self.conv1(self.conv0(x))
        gain = math.sqrt(0.5)
        return self.skip(x, gain=gain) + self.conv1(self.conv0(x), gain=gain)


class StyleGAN2Discriminator(nn.Module):
    """Blocks down to 4x4, then minibatch stddev, conv3x3, FC, FC -> logits (N,). Conditional:
    labels go through a mapping network to a cmap and the logit is <out, cmap> / sqrt(cmap_dim)
    (projection, as the official one)."""

    def __init__(
        self,
        channels: int = 3,  # image channels (from the data config)
        resolution: int = 32,  # a power of two >= 8 (from the data config)
        num_classes: int | None = None,  # labels (from the data config); null: unconditional
        architecture: str = "resnet",  # 'resnet' (official default) or 'orig' (cifar spec)
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,  # official default 4; the cifar spec 32
        mbstd_num_channels: int = 1,  # 0: no minibatch stddev
        cmap_dim: int | None = None,  # None: the 4x4 channel count
        mapping_layers: int = 8,  # the label mapping network (official default)
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if architecture not in D_ARCHITECTURES:
            raise ConfigError(
                f"discriminator architecture={architecture!r} is not supported; "
                f"accepted: {D_ARCHITECTURES}"
            )
        self.num_classes = _num_classes(num_classes)
        resolutions = block_resolutions(resolution)[::-1]  # resolution ... 4
        width = {r: min(channel_base // r, channel_max) for r in resolutions}
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(
                0 if r == resolution else width[r],
                width[r],
                width[r // 2],
                channels,
                architecture,
                conv_clamp,
            )
            for r in resolutions[:-1]
        )
        self.cmap_dim = (cmap_dim or width[4]) if self.num_classes else 0
        if self.num_classes:
            self.mapping = MappingNetwork(
                0, self.num_classes, self.cmap_dim, None, mapping_layers, w_avg_beta=None
            )
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
            if mbstd_num_channels
            else nn.Identity()
        )
        self.conv = EqualizedConv2d(
            width[4] + mbstd_num_channels, width[4], 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = EqualizedLinear(width[4] * 16, width[4], activation="lrelu")
        self.out = EqualizedLinear(width[4], self.cmap_dim or 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = None
        for index, block in enumerate(self.blocks):
            x = block(x, images if index == 0 else None)
        x = self.out(self.fc(self.conv(self.mbstd(x)).flatten(1)))
        if not self.num_classes:
            return x.squeeze(1)
        cmap = self.mapping(None, labels)
        return (x * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)

"""Super-resolution generators as in BasicSR (basicsr/models/archs/): MSRResNet (SRResNet without
BatchNorm) and ESRGAN's RRDBNet. Both map an LR image (B, C, H, W) to (B, C, scale*H, scale*W) with
no output activation (the output is not clamped; clamp for display or metrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (2, 4)


def _check_scale(scale: int, network: str) -> int:
    if scale not in SCALES:
        raise ValueError(f"{network} scale={scale} is not supported; accepted: {SCALES}")
    return scale.bit_length() - 1  # number of x2 upsampling stages


def scaled_kaiming_init_(modules: list[nn.Module], scale: float) -> None:
    """BasicSR's default_init_weights: Kaiming-normal weights times `scale`, zero bias; the small
    scale keeps deep residual trunks near the identity at the start."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                m.weight.data.mul_(scale)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class ResidualBlockNoBN(nn.Module):
    """x + conv(ReLU(conv(x))), no BatchNorm."""

    def __init__(
        self,
        width: int,  # channels in and out
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1)
        scaled_kaiming_init_([self], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """conv -> num_blocks ResidualBlockNoBN -> (conv -> PixelShuffle(2) -> LReLU) per x2 ->
    conv_hr -> conv_last, plus the bilinearly upsampled input (a global skip)."""

    size_multiple = 1  # any input height and width works

    def __init__(
        self,
        channels: int = 3,  # image channels in and out
        base_width: int = 64,  # feature channels (num_feat)
        num_blocks: int = 16,  # residual blocks in the trunk
        scale: int = 4,  # upscaling factor, 2 or 4
    ):
        super().__init__()
        self.scale = scale
        stages = _check_scale(scale, "MSRResNet")
        self.conv_first = nn.Conv2d(channels, base_width, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(base_width) for _ in range(num_blocks)])
        self.upsample = nn.Sequential()
        for _ in range(stages):
            self.upsample.extend(
                [
                    nn.Conv2d(base_width, base_width * 4, 3, 1, 1),
                    nn.PixelShuffle(2),
                    nn.LeakyReLU(0.1),
                ]
            )
        self.conv_hr = nn.Conv2d(base_width, base_width, 3, 1, 1)
        self.conv_last = nn.Conv2d(base_width, channels, 3, 1, 1)
        modules = [self.conv_first, self.upsample, self.conv_hr, self.conv_last]
        scaled_kaiming_init_(modules, 0.1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_first(lr), 0.1)
        out = self.upsample(self.body(feat))
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        base = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out + base


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs (each sees the input and all earlier outputs); x + 0.2 * x5."""

    def __init__(
        self,
        width: int,  # channels in and out
        growth: int = 32,  # channels each of the first four convs adds
    ):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(width + i * growth, growth if i < 4 else width, 3, 1, 1) for i in range(5)
        )
        scaled_kaiming_init_([self], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs[:-1]:
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(features, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: x + 0.2 * (three ResidualDenseBlocks)(x)."""

    def __init__(
        self,
        width: int,  # channels in and out
        growth: int = 32,  # growth channels of each dense block
    ):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(width, growth) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN generator: conv -> num_blocks RRDB -> conv (+ trunk skip) -> (nearest x2 -> conv ->
    LReLU) per x2 -> conv_hr -> conv_last. No BatchNorm anywhere."""

    size_multiple = 1  # any input height and width works

    def __init__(
        self,
        channels: int = 3,  # image channels in and out
        base_width: int = 64,  # feature channels (num_feat)
        num_blocks: int = 23,  # RRDB blocks in the trunk
        growth: int = 32,  # growth channels of the dense blocks (num_grow_ch)
        scale: int = 4,  # upscaling factor, 2 or 4
    ):
        super().__init__()
        self.scale = scale
        stages = _check_scale(scale, "RRDBNet")
        self.conv_first = nn.Conv2d(channels, base_width, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(base_width, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(base_width, base_width, 3, 1, 1)
        self.upsample_convs = nn.ModuleList(
            nn.Conv2d(base_width, base_width, 3, 1, 1) for _ in range(stages)
        )
        self.conv_hr = nn.Conv2d(base_width, base_width, 3, 1, 1)
        self.conv_last = nn.Conv2d(base_width, channels, 3, 1, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(lr)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.upsample_convs:
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

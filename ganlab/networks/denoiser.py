"""ResidualDenoiser: DnCNN's residual learning (Zhang et al., 2017) on FFDNet's pixel-unshuffled
input (Zhang et al., 2018). A plain stack of 3x3 convolutions predicts the noise; the output is
the input minus that prediction, so the network only has to learn what to take away."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.errors import ConfigError

NORMS = ("batch", "none")


def _check_int(option: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"ResidualDenoiser {option}={value!r} is not accepted: give an integer >= {low}"
        )
    return value


class ResidualDenoiser(nn.Module):
    """PixelUnshuffle(`unshuffle`) -> conv + ReLU -> (`depth` - 2) x (conv + norm + ReLU) -> conv
    -> PixelShuffle: the noise estimate, subtracted from the input. `unshuffle` 2 runs the
    stack on a quarter of the pixels (FFDNet's 2x2 sub-images, 4x the channels), a quarter of
    DnCNN's cost per pixel at the same depth and width; 1 is DnCNN itself.

    The last convolution starts at zero, so the untrained network returns its input exactly and
    training starts from the identity, not from a random image. The output is not clamped.
    """

    def __init__(
        self,
        channels: int = 3,  # image channels in
        out_channels: int | None = None,  # image channels out; None: as `channels`
        depth: int = 17,  # convolutions (DnCNN: 17 for a known sigma, 20 for the blind range)
        base_width: int = 64,  # feature channels
        norm: str = "batch",  # "batch" (DnCNN) or "none" (FFDNet's plain stack)
        unshuffle: int = 1,  # pixel-unshuffle factor; input sides must be multiples of it
    ):
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        if out_channels != channels:
            raise ConfigError(
                f"ResidualDenoiser returns its input minus the noise, so out_channels must equal "
                f"channels; got channels={channels}, out_channels={out_channels}"
            )
        _check_int("channels", channels, 1)
        _check_int("depth", depth, 2)
        _check_int("base_width", base_width, 1)
        _check_int("unshuffle", unshuffle, 1)
        if norm not in NORMS:
            raise ConfigError(f"ResidualDenoiser norm={norm!r} is not supported; accepted: {NORMS}")
        self.size_multiple = unshuffle  # input height and width must be multiples of this
        packed = channels * unshuffle**2
        use_bias = norm == "none"  # BatchNorm's shift makes a bias redundant (DnCNN)
        layers: list[nn.Module] = [
            nn.PixelUnshuffle(unshuffle),
            nn.Conv2d(packed, base_width, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(base_width, base_width, 3, padding=1, bias=use_bias))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(base_width))
            layers.append(nn.ReLU(inplace=True))
        for layer in layers:  # He init (DnCNN's): without it a deep plain stack's signal fades
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        self.last = nn.Conv2d(base_width, packed, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        layers += [self.last, nn.PixelShuffle(unshuffle)]
        self.noise = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.noise(x)

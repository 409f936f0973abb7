"""Gated-convolution inpainting generator, after the coarse stage of DeepFillv2 (Yu et al., 2019).

Gated convs rather than partial convs: each layer learns a soft, per-channel validity gate, so no
hand-kept mask has to be renormalised and carried through every layer, free-form holes need no
special case, and the layers stay plain convs (any norm, stride or DDP setup works as usual).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.networks.translation_layers import check_divisible

DOWNSAMPLINGS = 2


class GatedConv2d(nn.Module):
    """ELU(feature conv(x)) * sigmoid(gate conv(x)): the gate learns where features are valid."""

    def __init__(
        self,
        in_width: int,  # input channels
        out_width: int,  # output channels
        kernel_size: int = 3,  # square kernel side
        stride: int = 1,  # 2 halves the side
        dilation: int = 1,  # > 1 widens the context in the bottleneck
    ):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_width, 2 * out_width, kernel_size, stride, padding, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature, gate = self.conv(x).chunk(2, dim=1)
        return F.elu(feature) * torch.sigmoid(gate)


class GatedInpaintingGenerator(nn.Module):
    """(image (B, channels, H, W) in [-1, 1], mask (B, 1, H, W), 1 = missing) -> image in [-1, 1].

    The network sees the image with its hole zeroed plus the mask (channels + 1 inputs). With
    `composite` the known pixels are copied from the input and only the hole comes from the network;
    without it the whole predicted image is returned (for losses on the valid region too).
    H and W must be multiples of 4.
    """

    def __init__(
        self,
        channels: int = 3,  # image channels in and out
        base_width: int = 32,  # channels of the first gated conv; 2x and 4x deeper down
        dilations: tuple[int, ...] = (2, 4, 8, 16),  # dilated gated convs in the bottleneck
        composite: bool = True,  # keep the known pixels: out = image * (1 - mask) + pred * mask
    ):
        super().__init__()
        self.composite = composite
        w = base_width
        layers = [GatedConv2d(channels + 1, w, 5), GatedConv2d(w, 2 * w, 3, 2)]
        layers += [GatedConv2d(2 * w, 2 * w), GatedConv2d(2 * w, 4 * w, 3, 2)]
        layers += [GatedConv2d(4 * w, 4 * w), GatedConv2d(4 * w, 4 * w)]
        layers += [GatedConv2d(4 * w, 4 * w, dilation=d) for d in dilations]
        layers += [GatedConv2d(4 * w, 4 * w), GatedConv2d(4 * w, 4 * w)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), GatedConv2d(4 * w, 2 * w)]
        layers += [GatedConv2d(2 * w, 2 * w)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), GatedConv2d(2 * w, w)]
        layers += [GatedConv2d(w, w // 2), nn.Conv2d(w // 2, channels, 3, 1, 1), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    size_multiple = 2**DOWNSAMPLINGS  # input height and width must be multiples of this

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:] or len(mask) != len(image):
            raise ValueError(
                f"inpainting mask shape {tuple(mask.shape)} does not match image shape "
                f"{tuple(image.shape)}; expected ({len(image)}, 1, {image.shape[-2]}, "
                f"{image.shape[-1]}) with 1 = missing"
            )
        check_divisible(*image.shape[-2:], 2**DOWNSAMPLINGS, "Gated inpainting generator")
        known = image * (1 - mask)
        prediction = self.model(torch.cat([known, mask], 1))
        if self.composite:
            return known + prediction * mask
        return prediction

"""Gated-convolution inpainting generator, after the coarse stage of DeepFillv2 (Yu et al., 2019).

Gated convs rather than partial convs: each layer learns a soft, per-channel validity gate, so no
hand-kept mask has to be renormalised and carried through every layer, free-form holes need no
special case, and the layers stay plain convs (any norm, stride or DDP setup works as usual).

What the network sees in the hole (`hole_fill`) and what it returns (`output`) are options: the
hole at 0 and the whole image (DeepFillv2), or the hole pre-filled by a classical method (the
harmonic fill below, scikit-image's biharmonic inpainting, or both) and a correction added to
that fill ("residual"): the network starts at a smooth inpainting and learns only what a smooth
surface misses, instead of rebuilding every hole pixel from scratch.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.networks.translation_layers import check_divisible

DOWNSAMPLINGS = 2  # DeepFillv2's coarse stage; fewer keep more resolution
# What the hole holds when the network sees it: 0, `harmonic_fill`, scikit-image's biharmonic
# inpainting (exact, on the CPU in NumPy, about 10 ms per 64x64 image), or both smooth fills:
# the biharmonic one, with the harmonic one in `channels` more input channels (a membrane and a
# thin plate err in opposite directions: where to trust which is something to learn).
HOLE_FILLS = ("zero", "harmonic", "biharmonic", "both")
OUTPUTS = ("image", "residual")  # the image itself, or fill + 2 * tanh output (clamped)


def harmonic_fill(
    image: torch.Tensor,  # (B, C, H, W); the hole's values are ignored
    mask: torch.Tensor,  # (B, 1, H, W), 1 = missing
    iterations: int = 10,  # Jacobi sweeps per pyramid level
) -> torch.Tensor:
    """The hole filled with a smooth (harmonic) surface through its border, the known pixels
    unchanged: coarse to fine, each level's hole starts from the upsampled fill of the level
    below (the mask-weighted 2x2 mean of this one), then `iterations` Jacobi sweeps of Laplace's
    equation (each hole pixel the mean of its 4 neighbours) refine it. A cheap stand-in for
    biharmonic inpainting: a few milliseconds per batch, no parameters."""
    known = 1 - mask
    image = image * known
    if min(image.shape[-2:]) <= 2:  # coarsest level: the mean of the known pixels (0 if none)
        mean = image.sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
        filled = image + mean * mask
    else:
        weight = F.avg_pool2d(known, 2)
        coarse_image = F.avg_pool2d(image, 2) / weight.clamp_min(1e-6)
        coarse = harmonic_fill(coarse_image, (weight == 0).to(mask.dtype), iterations)
        coarse = F.interpolate(coarse, size=image.shape[-2:], mode="bilinear", align_corners=False)
        filled = image + coarse * mask
    for _ in range(iterations):
        padded = F.pad(filled, (1, 1, 1, 1), mode="replicate")
        up, down = padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]
        left, right = padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]
        neighbours = up + down + left + right
        filled = image + neighbours / 4 * mask
    return filled


INITS = ("he", "torch")  # the gated convs' initialisation (see GatedConv2d)


class GatedConv2d(nn.Module):
    """ELU(feature conv(x)) * sigmoid(gate conv(x)): the gate learns where features are valid.

    `init` "he": He-normal weights, the feature half doubled (the gate halves the signal at
    initialisation), zero biases: activations keep their scale through the generator's 18 gated
    layers. "torch": PyTorch's default, under which they shrink to about 1e-2 by the
    bottleneck and the features are mostly the biases (ELU(b) * sigmoid(b')).
    """

    def __init__(
        self,
        in_width: int,  # input channels
        out_width: int,  # output channels
        kernel_size: int = 3,  # square kernel side
        stride: int = 1,  # 2 halves the side
        dilation: int = 1,  # > 1 widens the context in the bottleneck
        init: str = "torch",  # INITS
    ):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_width, 2 * out_width, kernel_size, stride, padding, dilation)
        if init == "he":
            nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
            with torch.no_grad():
                self.conv.weight[:out_width] *= 2
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature, gate = self.conv(x).chunk(2, dim=1)
        return F.elu(feature) * torch.sigmoid(gate)


class GatedInpaintingGenerator(nn.Module):
    """(image (B, channels, H, W) in [-1, 1], mask (B, 1, H, W), 1 = missing) -> image in [-1, 1].

    The network sees the image with its hole zeroed (`hole_fill` "zero"), filled by
    `harmonic_fill` ("harmonic") or by scikit-image's biharmonic inpainting ("biharmonic"; no
    gradient flows through it), plus the mask (channels + 1 inputs); "both" adds the harmonic
    fill to the biharmonic one as `channels` more inputs. `output` "image" reads the last layer
    as the image; "residual" as a correction t of the (biharmonic when "both") fill:
    prediction = clamp(fill + 2 t, -1, 1), with the last conv zero-initialised, so an untrained
    network returns the fill. `skip` gives the last conv the network's input beside its features
    (a U-Net's long skip), so corrections that are local blends of the fills need no trip through
    the bottleneck. With `composite` the known pixels are copied
    from the input and only the hole comes from the network; without it the whole predicted image
    is returned (for losses on the valid region too). H and W must be multiples of
    2**`downsamplings` (4 by default).
    """

    def __init__(
        self,
        channels: int = 3,  # image channels in and out
        base_width: int = 32,  # channels of the first gated conv; 2x and 4x deeper down
        dilations: tuple[int, ...] = (2, 4, 8, 16),  # dilated gated convs in the bottleneck
        composite: bool = True,  # keep the known pixels: out = image * (1 - mask) + pred * mask
        hole_fill: str = "zero",  # HOLE_FILLS: the hole at 0 (DeepFillv2), or a smooth fill
        fill_iterations: int = 10,  # harmonic_fill's Jacobi sweeps per level (>= 0)
        output: str = "image",  # OUTPUTS: the image, or a correction of the network's input
        downsamplings: int = DOWNSAMPLINGS,  # stride-2 stages (2: DeepFillv2; 0: full resolution)
        init: str = "torch",  # INITS: the gated convs' initialisation (see GatedConv2d)
        skip: bool = False,  # the last conv also sees the network's input (a long skip)
    ):
        super().__init__()
        for option, value, accepted in (
            ("hole_fill", hole_fill, HOLE_FILLS),
            ("output", output, OUTPUTS),
            ("init", init, INITS),
        ):
            if value not in accepted:
                names = ", ".join(repr(name) for name in accepted)
                raise ConfigError(
                    f"model.generator.{option}={value!r} is not supported; accepted: {names}"
                )
        if (
            isinstance(fill_iterations, bool)
            or not isinstance(fill_iterations, int)
            or fill_iterations < 0
        ):
            raise ConfigError(
                f"model.generator.fill_iterations={fill_iterations!r} must be an integer >= 0 "
                "(harmonic_fill's Jacobi sweeps per pyramid level; 0: the pyramid alone)"
            )
        self.composite = composite
        self.hole_fill = hole_fill
        self.fill_iterations = fill_iterations
        self.output = output
        if isinstance(downsamplings, bool) or downsamplings not in range(DOWNSAMPLINGS + 1):
            raise ConfigError(
                f"model.generator.downsamplings={downsamplings!r} is not supported; accepted: "
                f"{', '.join(str(n) for n in range(DOWNSAMPLINGS + 1))}"
            )
        self.downsamplings = downsamplings
        self.size_multiple = 2**downsamplings  # input height and width must be multiples of this
        # DeepFillv2's coarse stage at downsamplings 2 (the same layers, in the same order)
        w = width = base_width
        gated = functools.partial(GatedConv2d, init=init)
        in_width = channels * (2 if hole_fill == "both" else 1) + 1
        layers: list[nn.Module] = [gated(in_width, w, 5)]
        for _ in range(downsamplings):
            layers += [gated(width, 2 * width, 3, 2), gated(2 * width, 2 * width)]
            width *= 2
        layers += [gated(width, width)]
        layers += [gated(width, width, dilation=d) for d in dilations]
        layers += [gated(width, width), gated(width, width)]
        for level in range(downsamplings):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), gated(width, width // 2)]
            width //= 2
            if level < downsamplings - 1:
                layers += [gated(width, width)]
        self.skip = skip
        last_width = w // 2 + (in_width if skip else 0)
        layers += [gated(w, w // 2), nn.Conv2d(last_width, channels, 3, 1, 1), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        if output == "residual":  # start at the identity: the prediction is the filled input
            nn.init.zeros_(layers[-2].weight)
            nn.init.zeros_(layers[-2].bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:] or len(mask) != len(image):
            raise ValueError(
                f"inpainting mask shape {tuple(mask.shape)} does not match image shape "
                f"{tuple(image.shape)}; expected ({len(image)}, 1, {image.shape[-2]}, "
                f"{image.shape[-1]}) with 1 = missing"
            )
        check_divisible(*image.shape[-2:], self.size_multiple, "Gated inpainting generator")
        known = image * (1 - mask)
        start = known
        extra = []  # "both": the harmonic fill after the mask
        if self.hole_fill in ("harmonic", "both"):
            start = harmonic_fill(image, mask, self.fill_iterations)
        if self.hole_fill == "both":
            extra = [start]
        if self.hole_fill in ("biharmonic", "both"):
            from ganlab.baselines import inpaint_biharmonic  # scikit-image, needed only here

            start = inpaint_biharmonic(known, mask).to(image.dtype)
        x = torch.cat([start, mask, *extra], 1)
        if self.skip:
            prediction = self.model[-1](self.model[-2](torch.cat([self.model[:-2](x), x], 1)))
        else:
            prediction = self.model(x)
        if self.output == "residual":
            prediction = (start + 2 * prediction).clamp(-1, 1)
        if self.composite:
            return known + prediction * mask
        return prediction

"""Image-to-image scores computed as the super-resolution and inpainting literature does.

Images arrive in [-1, 1] (N, 3, H, W), as ganlab's generators produce them. Every score is
computed on [0, 255] in float64 (BasicSR's and MMagic's scale), rounded to 8-bit levels by
default because published numbers come from saved 8-bit images, and averaged over images (each
image's PSNR first, then the mean), not pooled over all pixels.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import torch
import torchmetrics
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import LearnedPerceptualImagePatchSimilarity, PeakSignalNoiseRatio

from ganlab.errors import ConfigError

DATA_RANGE = 255.0
SSIM_KERNEL_SIZE = 11  # Wang et al. 2004: Gaussian window 11x11, sigma 1.5
SSIM_SIGMA = 1.5
# MATLAB rgb2ycbcr (ITU-R BT.601) on 8-bit values; output in [16, 235], kept unrounded like BasicSR.
Y_OFFSET = 16.0
Y_WEIGHTS = (65.481, 128.553, 24.966)

# Scores are computed by one process (rank 0 under DDP, which then broadcasts them): a metric that
# gathered its state from every process at compute() would wait for ranks that never compute.
ONE_PROCESS = {"sync_on_compute": False}

# torchvision backbone behind each LPIPS head, and the name torchvision caches its weights under.
LPIPS_BACKBONES = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}


def to_uint8_scale(images: Tensor, quantize: bool = True) -> Tensor:
    """[-1, 1] images as float64 on [0, 255]; clamped, and rounded to 8-bit levels if `quantize`."""
    scaled = (images.detach().double().clamp(-1.0, 1.0) + 1.0) * (DATA_RANGE / 2.0)
    return scaled.round() if quantize else scaled


def rgb_to_y(images: Tensor) -> Tensor:
    """BT.601 luma of (N, 3, H, W) RGB on [0, 255], as (N, 1, H, W) on [16, 235]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(
            f"Y channel needs RGB images (N, 3, H, W); got shape {tuple(images.shape)}"
        )
    red, green, blue = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    weight_r, weight_g, weight_b = Y_WEIGHTS
    return Y_OFFSET + (weight_r * red + weight_g * green + weight_b * blue) / DATA_RANGE


def crop_border(images: Tensor, crop: int) -> Tensor:
    """Drop `crop` pixels from each side (the SR convention sets crop = scale)."""
    if crop < 0:
        raise ConfigError(f"crop_border must be >= 0; got {crop}")
    height, width = images.shape[-2:]
    if 2 * crop >= min(height, width):
        raise ConfigError(
            f"crop_border={crop} removes the whole {height}x{width} image; "
            f"accepted: 0 to {(min(height, width) - 1) // 2}"
        )
    return images[..., crop : height - crop, crop : width - crop] if crop else images


def per_image_psnr(fake: Tensor, real: Tensor) -> Tensor:
    """PSNR of each image pair on [0, 255]: 20 log10(255 / sqrt(MSE)); infinite for equal images."""
    mse = (fake - real).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def _hole_mask(mask: Tensor, images: Tensor) -> Tensor:
    """Check an inpainting mask (N, 1, H, W) of 0/1, 1 = missing, and return it as bool."""
    expected = (images.shape[0], 1, *images.shape[-2:])
    if tuple(mask.shape) != expected:
        raise ConfigError(
            f"mask shape {tuple(mask.shape)} does not match the images; expected {expected}"
        )
    if not torch.all((mask == 0) | (mask == 1)):
        raise ConfigError("mask values must be 0 (known) or 1 (missing)")
    empty = (mask.flatten(1).sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ConfigError(f"mask has no missing pixel in image(s) {empty}; hole scores need a hole")
    return mask.bool()


def hole_l1(fake: Tensor, real: Tensor, mask: Tensor) -> Tensor:
    """Per-image mean |fake - real| over the hole's pixels and channels, on [0, 1] (MMagic MAE)."""
    hole = _hole_mask(mask, fake).expand_as(fake)
    total = ((fake - real).abs() * hole).flatten(1).sum(dim=1)
    return total / hole.flatten(1).sum(dim=1) / DATA_RANGE


def hole_psnr(fake: Tensor, real: Tensor, mask: Tensor) -> Tensor:
    """Per-image PSNR on [0, 255] with the MSE taken over the hole's pixels and channels only."""
    hole = _hole_mask(mask, fake).expand_as(fake)
    mse = ((fake - real).pow(2) * hole).flatten(1).sum(dim=1) / hole.flatten(1).sum(dim=1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def lpips_backbone_file(net: str) -> Path:
    """Where torchvision looks for the LPIPS backbone: $TORCH_HOME/hub/checkpoints/<name>."""
    if net not in LPIPS_BACKBONES:
        raise ConfigError(f"LPIPS net {net!r} is unknown; accepted: {sorted(LPIPS_BACKBONES)}")
    import torchvision.models

    weights = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def load_lpips(
    net: Literal["alex", "vgg", "squeeze"] = "alex",
    weights_path: str | os.PathLike | None = None,
    if_missing: Literal["error", "skip"] = "error",
) -> LearnedPerceptualImagePatchSimilarity | None:
    """torchmetrics' LPIPS, never downloading: the backbone comes from `weights_path` (a state
    dict of the torchvision model) or the torch hub cache. Without either, raise a ConfigError
    naming the file to place, or warn once and return None when `if_missing="skip"`."""
    if if_missing not in ("error", "skip"):
        raise ConfigError(f"lpips if_missing={if_missing!r} is unknown; accepted: 'error', 'skip'")
    cached = lpips_backbone_file(net)
    if weights_path is None:
        if cached.is_file():
            return LearnedPerceptualImagePatchSimilarity(net_type=net, **ONE_PROCESS)
        message = (
            f"LPIPS ({net}) needs the torchvision backbone weights {cached.name}, which cannot be "
            f"downloaded here; place the file at {cached} or pass its path as the weights path"
        )
        if if_missing == "skip":
            warnings.warn(message + "; skipping LPIPS", stacklevel=2)
            return None
        raise ConfigError(message)
    source = Path(weights_path)
    if not source.is_file():
        raise ConfigError(f"LPIPS weights path {str(source)!r} is not a file")
    # torchvision reads the backbone from <hub dir>/checkpoints/<name>; point the hub dir at a
    # private folder holding only that file so the user's cache is neither read nor written.
    with tempfile.TemporaryDirectory() as torch_home:
        checkpoints = Path(torch_home) / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        try:
            (checkpoints / cached.name).symlink_to(source.resolve())
        except OSError:
            shutil.copyfile(source, checkpoints / cached.name)
        saved = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = torch_home
        try:
            if Path(torch.hub.get_dir()) != checkpoints.parent:
                raise ConfigError(
                    f"torch.hub.set_dir() fixed the hub folder, so the LPIPS weights path is not "
                    f"used; place the file at {cached} instead"
                )
            return LearnedPerceptualImagePatchSimilarity(net_type=net, **ONE_PROCESS)
        except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(
                f"LPIPS weights path {str(source)!r} is not a state dict of torchvision's "
                f"{LPIPS_BACKBONES[net].removesuffix('_Weights')} ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]})"
            ) from error
        finally:
            if saved is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = saved


def _psnr_metric() -> PeakSignalNoiseRatio:
    # dim=(1, 2, 3): one PSNR per image, then the mean (dim=None would pool the MSE over images).
    psnr = PeakSignalNoiseRatio(data_range=DATA_RANGE, dim=(1, 2, 3), **ONE_PROCESS)
    return psnr.set_dtype(torch.float64)


def per_image_ssim(fake: Tensor, real: Tensor) -> Tensor:
    """SSIM of each image pair on [0, 255] over the valid region, as BasicSR and scikit-image do.

    torchmetrics reflection-pads by 5 and averages the whole map, border included; the map's
    interior is the valid region (windows wholly inside the image), so crop it before the mean."""
    _, full_map = structural_similarity_index_measure(
        fake,
        real,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        data_range=DATA_RANGE,  # None would mean max - min of each batch
        reduction="none",
        return_full_image=True,
    )
    border = SSIM_KERNEL_SIZE // 2
    return full_map[..., border:-border, border:-border].flatten(1).mean(dim=1)


def _mean_metric() -> MeanMetric:
    return MeanMetric(**ONE_PROCESS).set_dtype(torch.float64)


class TranslationScores(nn.Module):
    """Accumulates paired scores over batches; `compute()` gives `psnr` and `ssim` (RGB), plus
    `psnr_y`/`ssim_y` with `y_channel`, `l1_hole`/`psnr_hole` with `holes`, and `lpips` when an
    LPIPS metric (see `load_lpips`) is given. Border crop applies to PSNR and SSIM."""

    def __init__(
        self,
        crop: int = 0,
        y_channel: bool = False,
        holes: bool = False,
        quantize: bool = True,
        lpips: LearnedPerceptualImagePatchSimilarity | None = None,
    ) -> None:
        super().__init__()
        if crop < 0:
            raise ConfigError(f"crop_border must be >= 0; got {crop}")
        self.crop = crop  # pixels dropped from each side before PSNR/SSIM (SR: the scale)
        self.y_channel = y_channel  # also score BT.601 luma, as SR papers report
        self.holes = holes  # inpainting: update() takes the mask (1 = missing)
        self.quantize = quantize  # round to 8-bit levels, like scoring saved images
        self.lpips_net = lpips.net.pnet_type if lpips is not None else None
        metrics = {"psnr": _psnr_metric(), "ssim": _mean_metric()}
        if y_channel:
            metrics |= {"psnr_y": _psnr_metric(), "ssim_y": _mean_metric()}
        if holes:
            metrics |= {"l1_hole": _mean_metric(), "psnr_hole": _mean_metric()}
        if lpips is not None:
            metrics["lpips"] = lpips
        self.metrics = nn.ModuleDict(metrics)

    def update(self, fake: Tensor, real: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: generator output and target, both (N, 3, H, W) in [-1, 1]."""
        if fake.shape != real.shape or fake.ndim != 4 or fake.shape[1] != 3:
            raise ConfigError(
                f"scores need output and target of one shape (N, 3, H, W); got "
                f"{tuple(fake.shape)} and {tuple(real.shape)}"
            )
        if self.holes != (mask is not None):
            need = "needs a mask (N, 1, H, W), 1 = missing" if self.holes else "takes no mask"
            raise ConfigError(f"TranslationScores(holes={self.holes}) {need}")
        fake_255 = to_uint8_scale(fake, self.quantize)
        real_255 = to_uint8_scale(real, self.quantize)
        if mask is not None:
            mask = mask.to(fake_255.device)
            self.metrics["l1_hole"].update(hole_l1(fake_255, real_255, mask))
            self.metrics["psnr_hole"].update(hole_psnr(fake_255, real_255, mask))
        fake_crop = crop_border(fake_255, self.crop)
        real_crop = crop_border(real_255, self.crop)
        if min(fake_crop.shape[-2:]) < SSIM_KERNEL_SIZE:
            raise ConfigError(
                f"SSIM needs at least {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} pixels after the "
                f"{self.crop}-pixel border crop; got {tuple(fake_crop.shape[-2:])}"
            )
        self.metrics["psnr"].update(fake_crop, real_crop)
        self.metrics["ssim"].update(per_image_ssim(fake_crop, real_crop))
        if self.y_channel:
            fake_y, real_y = rgb_to_y(fake_crop), rgb_to_y(real_crop)
            self.metrics["psnr_y"].update(fake_y, real_y)
            self.metrics["ssim_y"].update(per_image_ssim(fake_y, real_y))
        if "lpips" in self.metrics:
            lpips = self.metrics["lpips"]
            lpips.update(fake.detach().clamp(-1, 1).float(), real.detach().clamp(-1, 1).float())

    def compute(self) -> dict[str, float]:
        """Mean over every image seen since the last reset."""
        if not self.metrics["psnr"].update_called:
            raise ConfigError("no batch was scored; call update() before compute()")
        return {name: float(metric.compute()) for name, metric in self.metrics.items()}

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def protocol(self) -> dict[str, object]:
        """How the numbers were made, stored beside them so runs compare only like with like."""
        protocol: dict[str, object] = {
            "input_range": "[-1, 1], clamped",
            "data_range": "[0, 255]" + (", rounded to 8-bit levels" if self.quantize else ""),
            "dtype": "float64",
            "channel": "RGB"
            + ("; Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255" if self.y_channel else ""),
            "crop_border": self.crop,
            "reduction": "per-image score, then mean over images",
            "psnr": "20 log10(255 / sqrt(MSE)) per image",
            "ssim": f"Gaussian {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE}, sigma {SSIM_SIGMA}, "
            "k1 0.01, k2 0.03, valid region (windows inside the image), mean over channels",
            "implementation": f"torchmetrics {torchmetrics.__version__}",
        }
        if self.holes:
            protocol["l1_hole"] = (
                "mean |diff| / 255 over hole pixels and channels (mask 1 = missing)"
            )
            protocol["psnr_hole"] = "PSNR with the MSE over hole pixels and channels, no crop"
        if self.lpips_net is not None:
            protocol["lpips"] = (
                f"torchmetrics LPIPS, {self.lpips_net} backbone, on [-1, 1], no crop"
            )
        return protocol

"""The classical methods a user would reach for instead of an image-to-image GAN.

Each takes float32 images (N, C, H, W) in [-1, 1] (ganlab's range, on any device) and returns
float32 (N, C, H', W') in [-1, 1] on the same device, one image at a time through PIL or
scikit-image. Noise levels (`sigma`) are on the 0..255 scale, as the denoising literature and
ganlab's denoising data give them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganlab.errors import ConfigError, GanlabError

UPSCALE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
# scikit-image's recommendation for fast-mode non-local means with a known sigma
# (its gallery example "Non-local means denoising for preserving textures").
NL_MEANS_H_PER_SIGMA = 0.6
NL_MEANS_PATCH_SIZE = 5
NL_MEANS_PATCH_DISTANCE = 6


def identity(images: Tensor) -> Tensor:
    """The input itself: the floor a watermark remover or a translation must beat."""
    _check_images(images)
    return images.detach().float().clone()


def upscale(images: Tensor, scale: int, method: str = "bicubic") -> Tensor:
    """Each image resized by `scale` with PIL (`bicubic`: a = -0.5, MATLAB's kernel; or
    `lanczos`: 3 lobes), per channel on 32-bit float, so nothing is rounded to 8 bits."""
    _check_images(images)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale={scale!r} must be an integer >= 1")
    if method not in UPSCALE_FILTERS:
        raise ConfigError(
            f"method={method!r} is not an upscaling baseline; accepted: "
            f"{', '.join(repr(m) for m in UPSCALE_FILTERS)}"
        )
    resample = UPSCALE_FILTERS[method]

    def resize(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        size = (width * scale, height * scale)
        channels = [
            np.asarray(Image.fromarray(image[..., c]).resize(size, resample))  # mode F
            for c in range(image.shape[2])
        ]
        return np.stack(channels, axis=-1)

    return _per_image(images, resize, np.float32)  # PIL's float mode is 32-bit


def inpaint_biharmonic(images: Tensor, masks: Tensor) -> Tensor:
    """Holes (`masks` (N, 1, H, W), 1 = missing) filled by scikit-image's biharmonic inpainting:
    the smoothest surface that meets the known pixels. Known pixels are kept."""
    _check_images(images)
    expected = (images.shape[0], 1, *images.shape[2:])
    if masks.ndim != 4 or tuple(masks.shape) != expected:
        raise ConfigError(
            f"masks of shape {tuple(masks.shape)} do not fit images of shape "
            f"{tuple(images.shape)}; masks must be (N, 1, H, W) = {expected}, 1 = missing"
        )
    restoration = _skimage_restoration()
    holes = masks.detach().cpu().numpy()[:, 0] > 0.5
    holes_in_order = iter(holes)  # `_per_image` calls `inpaint` on the images in order

    def inpaint(image: np.ndarray) -> np.ndarray:
        hole = next(holes_in_order)
        if not hole.any():
            return image
        return restoration.inpaint_biharmonic(image, hole, channel_axis=-1)

    return _per_image(images, inpaint)


def denoise_nl_means(images: Tensor, sigma: float | None = None) -> Tensor:
    """scikit-image's non-local means (fast mode, 5x5 patches searched within 6 pixels) with
    filter strength h = 0.6 * sigma. `sigma` is the noise's standard deviation on 0..255; None
    estimates it per image (`estimate_noise_sigma`)."""
    _check_images(images)
    _check_positive("sigma", sigma)
    restoration = _skimage_restoration()

    def denoise(image: np.ndarray) -> np.ndarray:
        noise = _noise_sigma(image, sigma)
        return restoration.denoise_nl_means(
            image,
            h=NL_MEANS_H_PER_SIGMA * noise,
            sigma=noise,
            fast_mode=True,
            patch_size=NL_MEANS_PATCH_SIZE,
            patch_distance=NL_MEANS_PATCH_DISTANCE,
            channel_axis=-1,
        )

    return _per_image(images, denoise)


def denoise_tv(images: Tensor, weight: float | None = None, sigma: float | None = None) -> Tensor:
    """scikit-image's total-variation denoising (Chambolle) on [0, 1] images. `weight` is its
    denoising weight (larger: smoother); None takes the noise sigma on the [0, 1] scale, i.e.
    `sigma / 255`, with `sigma` on 0..255 given or, if None, estimated per image
    (`estimate_noise_sigma`)."""
    _check_images(images)
    _check_positive("weight", weight)
    _check_positive("sigma", sigma)
    restoration = _skimage_restoration()

    def denoise(image: np.ndarray) -> np.ndarray:
        strength = weight if weight is not None else _noise_sigma(image, sigma)
        return restoration.denoise_tv_chambolle(image, weight=strength, channel_axis=-1)

    return _per_image(images, denoise)


# --- helpers ----------------------------------------------------------------------------------


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"images must be a tensor (N, C, H, W) in [-1, 1]; got {shape}")


def _check_positive(option: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise ConfigError(f"{option}={value!r} must be a number > 0, or None to estimate it")


def estimate_noise_sigma(images: Tensor) -> Tensor:
    """Each image's noise standard deviation on 0..255, (N,), by Donoho's rule: median(|HH|) /
    0.6745 over the finest Haar diagonal wavelet details, averaged over channels (skimage's
    `estimate_sigma` does this with db2 through PyWavelets, which ganlab does not need)."""
    _check_images(images)
    pixels = (images.detach().cpu().double().numpy().transpose(0, 2, 3, 1) + 1.0) / 2.0
    return torch.tensor([_haar_sigma(p) * 255.0 for p in pixels], dtype=torch.float32)


def _haar_sigma(image: np.ndarray) -> float:
    """Donoho's noise estimate of an (H, W, C) image, on the image's own scale."""
    height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    blocks = image[:height, :width]
    diagonal = blocks[0::2, 0::2] - blocks[0::2, 1::2] - blocks[1::2, 0::2] + blocks[1::2, 1::2]
    return float(np.median(np.abs(diagonal / 2.0), axis=(0, 1)).mean() / 0.6745)


def _noise_sigma(image: np.ndarray, sigma: float | None) -> float:
    """The noise's standard deviation on the [0, 1] scale of `image`: given, or estimated."""
    if sigma is not None:
        return sigma / 255.0
    return max(_haar_sigma(image), 1e-6)  # a clean image: no smoothing, not a zero division


def _per_image(
    images: Tensor, method: Callable[[np.ndarray], np.ndarray], dtype: type = np.float64
) -> Tensor:
    """`method` on each image as (H, W, C) `dtype` on [0, 1]; the results back as [-1, 1].
    Input beyond [-1, 1] (noisy pixels) is passed on unclipped; outputs are clipped."""
    pixels = (images.detach().cpu().double().numpy().transpose(0, 2, 3, 1) + 1.0) / 2.0
    pixels = pixels.astype(dtype)
    results = np.stack([np.asarray(method(np.ascontiguousarray(p))) for p in pixels])
    outputs = torch.from_numpy(results.transpose(0, 3, 1, 2).astype(np.float32))
    return (outputs * 2.0 - 1.0).clamp(-1.0, 1.0).to(images.device)


def _skimage_restoration():
    try:
        import skimage.restoration
    except ImportError:
        raise GanlabError(
            "the inpainting and denoising baselines are scikit-image's; it is not installed: "
            "pip install 'scikit-image>=0.24'"
        ) from None
    return skimage.restoration

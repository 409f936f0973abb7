"""The classical baselines: shapes, ranges, and that each does its job on images where it must."""

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab import baselines
from ganlab.errors import ConfigError, GanlabError


def smooth_images(count: int = 2, size: int = 64) -> torch.Tensor:
    """Low-frequency colour patterns in [-0.8, 0.8], (count, 3, size, size) float32."""
    axis = torch.linspace(0, 1, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    images = []
    for k in range(count):
        channels = [
            torch.sin(2 * math.pi * (0.7 + 0.3 * c + 0.2 * k) * x + c) * torch.cos(3 * y + k)
            for c in range(3)
        ]
        images.append(0.8 * torch.stack(channels))
    return torch.stack(images).float()


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-image PSNR on the [-1, 1] range (peak-to-peak 2)."""
    mse = ((estimate.double() - target.double()) ** 2).mean(dim=(1, 2, 3))
    return float((10 * torch.log10(4.0 / mse)).mean())


def noisy(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Gaussian noise of `sigma` on 0..255, not clipped (as the denoising loader serves it)."""
    generator = torch.Generator().manual_seed(seed)
    return images + torch.randn(images.shape, generator=generator) * (2 * sigma / 255)


def test_identity_returns_an_equal_copy():
    images = smooth_images()
    result = baselines.identity(images)
    assert torch.equal(result, images) and result.data_ptr() != images.data_ptr()


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
def test_upscaling_a_bicubic_downscaled_smooth_image_comes_close(method):
    images = smooth_images()
    low = torch.stack(
        [
            torch.from_numpy(
                np.stack(
                    [
                        np.asarray(
                            Image.fromarray(channel.numpy()).resize(
                                (16, 16), Image.Resampling.BICUBIC
                            )
                        )
                        for channel in image
                    ]
                )
            )
            for image in images
        ]
    )
    upscaled = baselines.upscale(low, 4, method=method)
    assert upscaled.shape == (2, 3, 64, 64) and upscaled.dtype == torch.float32
    assert upscaled.min() >= -1 and upscaled.max() <= 1
    nearest = torch.nn.functional.interpolate(low, scale_factor=4, mode="nearest")
    assert psnr(upscaled, images) > 35
    assert psnr(upscaled, images) > psnr(nearest, images) + 5


def test_upscaling_refuses_an_unknown_method_and_a_bad_scale():
    images = smooth_images(1, 8)
    with pytest.raises(ConfigError) as caught:
        baselines.upscale(images, 4, method="nearest")
    assert str(caught.value) == (
        "method='nearest' is not an upscaling baseline; accepted: 'bicubic', 'lanczos'"
    )
    with pytest.raises(ConfigError, match=r"scale=0 must be an integer >= 1"):
        baselines.upscale(images, 0)
    with pytest.raises(ConfigError, match=r"images must be a tensor \(N, C, H, W\).*\(3, 8, 8\)"):
        baselines.upscale(images[0], 4)


def test_biharmonic_fills_a_hole_in_a_smooth_gradient_better_than_zeros():
    images = smooth_images()
    masks = torch.zeros(2, 1, 64, 64)
    masks[:, :, 24:40, 24:40] = 1
    holed = images * (1 - masks)
    filled = baselines.inpaint_biharmonic(holed, masks)
    hole = masks.expand_as(images).bool()
    error = (filled - images).abs()[hole].mean()
    assert error < 0.02 < (holed - images).abs()[hole].mean() / 5
    assert torch.allclose(filled[~hole], holed[~hole], atol=1e-6)  # known pixels kept


def test_biharmonic_refuses_masks_of_another_shape():
    with pytest.raises(ConfigError) as caught:
        baselines.inpaint_biharmonic(smooth_images(), torch.zeros(2, 1, 32, 32))
    assert str(caught.value) == (
        "masks of shape (2, 1, 32, 32) do not fit images of shape (2, 3, 64, 64); masks must "
        "be (N, 1, H, W) = (2, 1, 64, 64), 1 = missing"
    )


@pytest.mark.parametrize("sigma", [25.0, None])
def test_non_local_means_raises_the_psnr_of_a_noisy_smooth_image(sigma):
    clean = smooth_images()
    noisy_images = noisy(clean, 25)
    denoised = baselines.denoise_nl_means(noisy_images, sigma=sigma)
    assert denoised.shape == clean.shape and denoised.min() >= -1 and denoised.max() <= 1
    assert psnr(denoised, clean) > psnr(noisy_images.clamp(-1, 1), clean) + 5


@pytest.mark.parametrize(("weight", "sigma"), [(None, 25.0), (None, None), (0.1, None)])
def test_total_variation_raises_the_psnr_of_a_noisy_smooth_image(weight, sigma):
    clean = smooth_images()
    noisy_images = noisy(clean, 25)
    denoised = baselines.denoise_tv(noisy_images, weight=weight, sigma=sigma)
    assert denoised.shape == clean.shape and denoised.min() >= -1 and denoised.max() <= 1
    assert psnr(denoised, clean) > psnr(noisy_images.clamp(-1, 1), clean) + 5


def test_denoisers_refuse_a_non_positive_strength():
    with pytest.raises(ConfigError, match=r"sigma=0 must be a number > 0, or None to estimate"):
        baselines.denoise_nl_means(smooth_images(1, 8), sigma=0)
    with pytest.raises(ConfigError, match=r"weight=-0.1 must be a number > 0"):
        baselines.denoise_tv(smooth_images(1, 8), weight=-0.1)


@pytest.mark.parametrize("sigma", [10.0, 25.0, 50.0])
def test_the_noise_estimate_finds_the_added_sigma(sigma):
    clean = smooth_images(4)
    estimate = baselines.estimate_noise_sigma(noisy(clean, sigma))
    assert estimate.shape == (4,)
    assert torch.allclose(estimate, torch.full((4,), sigma), rtol=0.1)
    assert baselines.estimate_noise_sigma(clean).max() < 1.0


def test_without_scikit_image_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.restoration", None)  # as if not installed
    with pytest.raises(GanlabError) as caught:
        baselines.denoise_tv(smooth_images(1, 8))
    assert str(caught.value) == (
        "the inpainting and denoising baselines are scikit-image's; it is not installed: "
        "pip install 'scikit-image>=0.24'"
    )

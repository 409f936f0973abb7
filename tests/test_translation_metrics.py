"""Translation scores equal the SR/inpainting literature's formulas on fixed arrays."""

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision

from ganlab.errors import ConfigError
from ganlab.metrics.translation import (
    TranslationScores,
    crop_border,
    hole_l1,
    load_lpips,
    lpips_backbone_file,
    rgb_to_y,
    to_uint8_scale,
)


def from_uint8(values) -> torch.Tensor:
    """8-bit values as the [-1, 1] float64 images ganlab passes."""
    return torch.as_tensor(np.asarray(values), dtype=torch.float64) / 127.5 - 1.0


def random_uint8(seed: int, shape=(2, 3, 24, 24)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.float64)


def reference_ssim(image_a: np.ndarray, image_b: np.ndarray) -> float:
    """SSIM as BasicSR computes it: Gaussian 11, sigma 1.5, valid region, per channel."""
    axis = np.arange(11) - 5
    gauss = np.exp(-(axis**2) / (2 * 1.5**2))
    gauss /= gauss.sum()
    window = np.outer(gauss, gauss)

    def filtered(plane):
        patches = np.lib.stride_tricks.sliding_window_view(plane, (11, 11))
        return np.einsum("ijkl,kl->ij", patches, window)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for a, b in zip(image_a, image_b, strict=True):
        mu_a, mu_b = filtered(a), filtered(b)
        var_a = filtered(a * a) - mu_a**2
        var_b = filtered(b * b) - mu_b**2
        cov = filtered(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
            (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        )
        values.append(ssim_map.mean())
    return float(np.mean(values))


def test_psnr_is_the_mean_of_per_image_psnr_not_pooled():
    real = random_uint8(0)
    noise = np.stack([np.full((3, 24, 24), 3.0), np.full((3, 24, 24), 20.0)])
    fake = np.clip(real + noise * np.where(real < 128, 1, -1), 0, 255)
    scores = TranslationScores()
    scores.update(from_uint8(fake), from_uint8(real))
    per_image = [
        20 * math.log10(255 / math.sqrt(np.mean((f - r) ** 2)))
        for f, r in zip(fake, real, strict=True)
    ]
    pooled = 20 * math.log10(255 / math.sqrt(np.mean((fake - real) ** 2)))
    # 1e-5 dB: torchmetrics holds the factor 10 / ln(10) in float32
    assert scores.compute()["psnr"] == pytest.approx(np.mean(per_image), abs=1e-5)
    assert abs(np.mean(per_image) - pooled) > 1.0  # the two conventions differ on this pair


def test_scores_accumulate_over_batches_as_one_mean():
    real, fake = random_uint8(1), random_uint8(2)
    whole = TranslationScores()
    whole.update(from_uint8(fake), from_uint8(real))
    batched = TranslationScores()
    batched.update(from_uint8(fake[:1]), from_uint8(real[:1]))
    batched.update(from_uint8(fake[1:]), from_uint8(real[1:]))
    for name, value in whole.compute().items():
        assert batched.compute()[name] == pytest.approx(value, abs=1e-9)
    batched.reset()
    batched.update(from_uint8(fake[:1]), from_uint8(real[:1]))
    assert batched.compute()["psnr"] != pytest.approx(whole.compute()["psnr"], abs=1e-3)


def test_y_channel_equals_the_bt601_formula_on_pixels():
    pixels = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (10, 20, 30), (200, 100, 50)]
    rgb = torch.tensor(pixels, dtype=torch.float64).T.reshape(1, 3, 1, len(pixels))
    luma = rgb_to_y(rgb).flatten().tolist()
    for (red, green, blue), value in zip(pixels, luma, strict=True):
        assert value == pytest.approx(16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255)
    assert luma[0] == pytest.approx(16.0) and luma[1] == pytest.approx(235.0)


def test_y_scores_use_the_luma_of_the_cropped_images():
    real, fake = random_uint8(3), random_uint8(4)
    scores = TranslationScores(crop=4, y_channel=True)
    scores.update(from_uint8(fake), from_uint8(real))
    fake_y = rgb_to_y(torch.from_numpy(fake))[..., 4:-4, 4:-4].numpy()
    real_y = rgb_to_y(torch.from_numpy(real))[..., 4:-4, 4:-4].numpy()
    psnr_y = np.mean(
        [
            20 * math.log10(255 / math.sqrt(np.mean((f - r) ** 2)))
            for f, r in zip(fake_y, real_y, strict=True)
        ]
    )
    ssim_y = np.mean([reference_ssim(f, r) for f, r in zip(fake_y, real_y, strict=True)])
    result = scores.compute()
    assert set(result) == {"psnr", "ssim", "psnr_y", "ssim_y"}
    assert result["psnr_y"] == pytest.approx(psnr_y, abs=1e-5)
    assert result["ssim_y"] == pytest.approx(ssim_y, abs=1e-4)


def test_border_crop_removes_exactly_crop_pixels_each_side():
    images = torch.arange(2 * 3 * 10 * 12, dtype=torch.float64).reshape(2, 3, 10, 12)
    cropped = crop_border(images, 2)
    assert cropped.shape == (2, 3, 6, 8)
    assert torch.equal(cropped, images[:, :, 2:8, 2:10])
    assert crop_border(images, 0) is images


def test_border_crop_larger_than_the_image_is_refused():
    with pytest.raises(
        ConfigError, match=r"crop_border=5 removes the whole 10x12 image; accepted: 0 to 4"
    ):
        crop_border(torch.zeros(1, 3, 10, 12), 5)
    with pytest.raises(ConfigError, match="crop_border must be >= 0; got -1"):
        TranslationScores(crop=-1)


def test_ssim_needs_an_11_pixel_window_after_the_crop():
    images = from_uint8(random_uint8(5, shape=(1, 3, 16, 16)))
    with pytest.raises(
        ConfigError, match=r"at least 11x11 pixels after the 3-pixel border crop; got \(10, 10\)"
    ):
        TranslationScores(crop=3).update(images, images)


def test_compute_before_any_batch_is_refused():
    with pytest.raises(
        ConfigError, match=r"no batch was scored; call update\(\) before compute\(\)"
    ):
        TranslationScores().compute()


def test_ssim_of_an_image_with_itself_is_one():
    images = from_uint8(random_uint8(6))
    scores = TranslationScores(y_channel=True)
    scores.update(images, images)
    result = scores.compute()
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["ssim_y"] == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(result["psnr"])


def test_ssim_matches_the_gaussian_valid_region_formula():
    real = random_uint8(7)
    fake = np.clip(real + np.random.default_rng(8).normal(0, 25, real.shape).round(), 0, 255)
    scores = TranslationScores()
    scores.update(from_uint8(fake), from_uint8(real))
    expected = np.mean([reference_ssim(f, r) for f, r in zip(fake, real, strict=True)])
    # (torchmetrics 1.9's own SSIM mean counts the reflection-padded border, which the
    # literature drops, while 1.4's does not: ganlab crops the SSIM map itself on every version)
    assert scores.compute()["ssim"] == pytest.approx(expected, abs=1e-9)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    real = random_uint8(9, shape=(1, 3, 32, 32))
    fake = np.clip(real + np.random.default_rng(10).normal(0, 30, real.shape).round(), 0, 255)
    expected = metrics.structural_similarity(
        fake[0], real[0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=0,
    )  # fmt: skip
    scores = TranslationScores()
    scores.update(from_uint8(fake), from_uint8(real))
    assert scores.compute()["ssim"] == pytest.approx(expected, abs=1e-6)


def test_inputs_are_clamped_and_rounded_to_8_bit_levels():
    images = torch.tensor([-1.5, -1.0, 0.0, 0.3, 1.2], dtype=torch.float64)
    assert to_uint8_scale(images).tolist() == [
        0.0,
        0.0,
        128.0,
        166.0,
        255.0,
    ]  # 127.5 rounds to even
    assert to_uint8_scale(images, quantize=False).tolist() == pytest.approx(
        [0, 0, 127.5, 165.75, 255]
    )
    assert TranslationScores(quantize=False).protocol()["data_range"] == "[0, 255]"


def hole_pair():
    """Target all 0; output 51 inside a 4x4 hole, 200 outside it (which hole scores ignore)."""
    real = np.zeros((2, 3, 16, 16))
    fake = np.full((2, 3, 16, 16), 200.0)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:8, 4:8] = 1
    fake[:, :, 4:8, 4:8] = 51.0
    return fake, real, mask


def test_hole_l1_and_psnr_of_a_known_pair():
    fake, real, mask = hole_pair()
    assert hole_l1(torch.from_numpy(fake), torch.from_numpy(real), mask).tolist() == pytest.approx(
        [0.2, 0.2]
    )
    scores = TranslationScores(holes=True)
    scores.update(from_uint8(fake), from_uint8(real), mask)
    result = scores.compute()
    assert result["l1_hole"] == pytest.approx(51 / 255)
    assert result["psnr_hole"] == pytest.approx(20 * math.log10(255 / 51))
    assert result["psnr"] == pytest.approx(
        np.mean([20 * math.log10(255 / math.sqrt(np.mean(f**2))) for f in fake])
    )
    assert "mask 1 = missing" in scores.protocol()["l1_hole"]


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (
            torch.ones(2, 3, 16, 16),
            r"mask shape \(2, 3, 16, 16\) does not match the images; expected \(2, 1, 16, 16\)",
        ),
        (torch.full((2, 1, 16, 16), 0.5), r"mask values must be 0 \(known\) or 1 \(missing\)"),
        (
            torch.cat([torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)]),
            r"no missing pixel in image\(s\) \[1\]",
        ),
    ],
)
def test_bad_masks_are_refused(mask, message):
    fake, real, _ = hole_pair()
    with pytest.raises(ConfigError, match=message):
        TranslationScores(holes=True).update(from_uint8(fake), from_uint8(real), mask)


def test_mask_presence_must_match_the_holes_flag():
    fake, real, mask = hole_pair()
    with pytest.raises(ConfigError, match=r"holes=True\) needs a mask \(N, 1, H, W\), 1 = missing"):
        TranslationScores(holes=True).update(from_uint8(fake), from_uint8(real))
    with pytest.raises(ConfigError, match=r"holes=False\) takes no mask"):
        TranslationScores().update(from_uint8(fake), from_uint8(real), mask)


def test_output_and_target_shapes_must_agree():
    with pytest.raises(ConfigError, match=r"got \(1, 3, 16, 16\) and \(1, 3, 16, 15\)"):
        TranslationScores().update(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))


def test_protocol_states_range_channel_crop_and_implementation():
    protocol = TranslationScores(crop=4, y_channel=True).protocol()
    assert protocol["crop_border"] == 4
    assert "65.481 R + 128.553 G + 24.966 B" in protocol["channel"]
    assert protocol["data_range"].startswith("[0, 255]")
    assert protocol["reduction"] == "per-image score, then mean over images"
    assert protocol["implementation"].startswith("torchmetrics ")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: any download attempt would have to write into it."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_lpips_without_backbone_weights_names_the_file_and_where(empty_torch_home):
    expected = empty_torch_home / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert lpips_backbone_file("squeeze") == expected
    with pytest.raises(ConfigError) as raised:
        load_lpips("squeeze")
    assert "needs the torchvision backbone weights squeezenet1_1-b8a52dc0.pth" in str(raised.value)
    assert f"place the file at {expected}" in str(raised.value)
    assert not expected.exists()  # nothing was downloaded


def test_lpips_can_be_skipped_with_one_warning(empty_torch_home):
    with pytest.warns(UserWarning, match="alexnet-owt-7be5be79.pth.*; skipping LPIPS") as caught:
        assert load_lpips("alex", if_missing="skip") is None
    assert len(caught) == 1
    assert not (empty_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").exists()


def test_lpips_bad_arguments_are_refused(tmp_path, empty_torch_home):
    with pytest.raises(
        ConfigError, match=r"LPIPS net 'resnet' is unknown; accepted: \['alex', 'squeeze', 'vgg'\]"
    ):
        load_lpips("resnet")
    with pytest.raises(
        ConfigError, match=r"if_missing='ignore' is unknown; accepted: 'error', 'skip'"
    ):
        load_lpips("squeeze", if_missing="ignore")
    with pytest.raises(ConfigError, match="LPIPS weights path .*absent.pth' is not a file"):
        load_lpips("squeeze", weights_path=tmp_path / "absent.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"unrelated.weight": torch.zeros(1)}, wrong)
    with pytest.raises(
        ConfigError, match="wrong.pth' is not a state dict of torchvision's SqueezeNet1_1"
    ):
        load_lpips("squeeze", weights_path=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pth' is not a state dict of torchvision's"):
        load_lpips("squeeze", weights_path=garbage)


def test_lpips_weights_path_is_refused_when_the_hub_folder_is_fixed(tmp_path, monkeypatch):
    weights = tmp_path / "squeezenet.pth"
    weights.write_bytes(b"unused")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "fixed_hub"))  # torch.hub.set_dir
    expected = tmp_path / "fixed_hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    with pytest.raises(
        ConfigError, match=f"set_dir\\(\\) fixed the hub folder.*at {expected} instead"
    ):
        load_lpips("squeeze", weights_path=weights)


def test_lpips_runs_from_a_local_backbone_file(tmp_path, empty_torch_home):
    # Plumbing check only: a randomly initialised SqueezeNet 1.1, not the ImageNet weights.
    torch.manual_seed(0)
    weights = tmp_path / "random_squeezenet1_1.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping" warning on this path
        lpips = load_lpips("squeeze", weights_path=weights)
    loaded = lpips.net.net.slices[0][0].weight
    assert torch.equal(loaded, torch.load(weights)["features.0.weight"])
    assert not (empty_torch_home / "hub").exists()  # the user's cache was neither read nor written
    scores = TranslationScores(lpips=lpips)
    images = from_uint8(random_uint8(11, shape=(2, 3, 32, 32)))
    scores.update(images, images)
    scores.update(images, images.flip(-1))
    result = scores.compute()
    assert set(result) == {"psnr", "ssim", "lpips"}
    assert result["lpips"] > 0.0
    assert "squeeze backbone" in scores.protocol()["lpips"]

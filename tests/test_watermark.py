"""Watermark removal's recipe options: the varied training watermarks of the photo set (the test
split unchanged), the mask head's losses (BCE with positive weight, + Dice), the L1 on the raw
prediction inside the true mask, and the composite that passes clean pixels through exactly."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganlab.data import degradations
from ganlab.data.base import DataError
from ganlab.data.photos import prepare_photos
from ganlab.errors import ConfigError
from ganlab.losses import BCELoss
from ganlab.models import WatermarkRemovalGAN
from ganlab.models.restoration import MAX_OPACITY, global_unblend, masked_l1, soft_dice_loss
from ganlab.networks import PatchGANDiscriminator, UnetGenerator

ADAM = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))


def remover(**options) -> WatermarkRemovalGAN:
    torch.manual_seed(0)
    return WatermarkRemovalGAN(
        generator=partial(UnetGenerator, num_downs=5, base_width=8, dropout=False),
        discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        **options,
    )


def marked_batch(count: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(count, 3, size, size, generator=generator) * 2 - 1
    mask = torch.zeros(count, 1, size, size)
    mask[:, :, 4:12, 6:20] = 1
    return {"source": target * (1 - mask) + 0.8 * mask, "target": target, "mask": mask}


def last_layer(model: WatermarkRemovalGAN) -> nn.ConvTranspose2d:
    return [m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d)][-1]


# ---------------------------------------------------------------------- the network
def test_the_full_resolution_head_takes_the_input_image_beside_the_features():
    torch.manual_seed(0)
    plain = UnetGenerator(3, 4, num_downs=5, base_width=8)
    refined = UnetGenerator(3, 4, num_downs=5, base_width=8, refine_width=6)
    assert plain.refine is None and isinstance(plain.model.model[-1], nn.Tanh)
    assert isinstance(refined.model.model[-1], nn.ReLU)  # features, not an image, go on
    assert refined.refine[0].in_channels == 6 + 3 and refined.refine[-2].out_channels == 4
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    output = refined(image)
    assert output.shape == (2, 4, 32, 32) and output.abs().max() <= 1
    # one input pixel reaches the head directly: the output changes at that pixel
    moved = image.clone()
    moved[:, :, 10, 10] += 0.5
    with torch.no_grad():
        refined.model.model[-2].weight.zero_()  # the U-Net path silenced: only the head's input
        refined.model.model[-2].bias.zero_()
        changed = (refined(moved) - refined(image)).abs().amax(dim=(0, 1))
    assert changed[10, 10] > 0 and changed[20, 20] == 0


@pytest.mark.parametrize("width", [-1, 1.5, True])
def test_a_bad_refine_width_is_refused(width):
    with pytest.raises(ConfigError, match=rf"refine_width={width!r} is not a width; accepted: 0"):
        UnetGenerator(3, 3, num_downs=5, base_width=8, refine_width=width)


# ---------------------------------------------------------------------- the model
def test_a_mask_of_all_zeros_returns_the_input_exactly():
    model = remover()
    with torch.no_grad():  # the mask channel's pre-Tanh activation -> -inf: m == 0 exactly
        last_layer(model).weight[:, 3] = 0
        last_layer(model).bias[3] = -100.0
    source = marked_batch()["source"]
    image = model.translate(source)
    assert torch.equal(
        model.generate(None, (source, None)).mask_probability, torch.zeros(4, 1, 32, 32)
    )
    assert torch.equal(image, source)


def test_a_residual_branch_starts_from_the_source():
    model = remover(image_branch="residual")
    with torch.no_grad():  # image channels t == 0: the prediction is the source itself
        last_layer(model).weight[:, :3] = 0
        last_layer(model).bias[:3] = 0
    source = marked_batch()["source"]
    fake = model.generate(None, (source, None))
    assert torch.equal(fake.prediction, source)
    assert torch.allclose(fake, source, atol=1e-6)
    with torch.no_grad():  # t == 1 adds 2, clamped to the image range
        last_layer(model).bias[:3] = 100.0
    assert torch.equal(model.generate(None, (source, None)).prediction, torch.ones_like(source))


def test_unblend_inverts_the_blend_from_the_watermarks_colour_and_opacity():
    model = remover(image_branch="unblend")
    assert last_layer(model).out_channels == 3 + 1 + 1  # colour, opacity, mask
    target = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    opacity = MAX_OPACITY / 2  # the opacity channel at 0
    source = target * (1 - opacity) + opacity * 0.8  # blended with colour 0.8 everywhere
    with torch.no_grad():
        last_layer(model).weight.zero_()
        last_layer(model).bias.copy_(torch.tensor([math.atanh(0.8)] * 3 + [0.0, 0.0]))
    assert torch.allclose(model.generate(None, (source, None)).prediction, target, atol=1e-5)
    with torch.no_grad():  # opacity 0: the source itself, whatever the colour
        last_layer(model).bias[3] = -100.0
    assert torch.equal(model.generate(None, (source, None)).prediction, source)


def test_global_unblend_pools_one_colour_and_opacity_over_the_mask():
    model = remover(image_branch="global_unblend", inside_l1_weight=1.0)
    assert model.composite_with_mask is False and last_layer(model).out_channels == 3 + 1 + 1
    target = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    coverage = torch.zeros(2, 1, 32, 32)
    coverage[:, :, 8:20, 4:30] = 1.0
    coverage[:, :, 20, 4:30] = 0.5  # an antialiased edge
    opacity, colour = 0.4, torch.tensor([0.9, -0.3, 0.1]).view(1, 3, 1, 1)
    alpha = opacity * coverage
    source = target * (1 - alpha) + alpha * colour
    inside = coverage > 0
    # per-pixel colours and opacities that are right only on average over the marked pixels
    wobble = torch.randn(2, 1, 32, 32) * 0.05
    colour_map = (colour + wobble * coverage).clamp(-0.99, 0.99)
    opacity_map = opacity + 0.1 * torch.sign(torch.randn(2, 1, 32, 32)) * inside
    outputs = torch.cat([colour_map, opacity_map / MAX_OPACITY * 2 - 1, coverage * 2 - 1], 1)

    class Fixed(nn.Module):
        def forward(self, image):
            return outputs

    model.generator = Fixed()
    fake = model.generate(None, (source, None))
    assert torch.equal(fake[~inside.expand_as(fake)], source[~inside.expand_as(source)])
    weight = coverage / coverage.sum((2, 3), keepdim=True)
    pooled_opacity = (opacity_map * weight).sum((2, 3), keepdim=True)
    pooled_colour = (colour_map * weight).sum((2, 3), keepdim=True)
    assert (pooled_opacity - opacity).abs().max() < 0.02
    expected = (source - pooled_opacity * coverage * pooled_colour) / (
        1 - pooled_opacity * coverage
    )
    torch.testing.assert_close(fake, expected.clamp(-1, 1))
    assert (fake - target).abs().max() < 0.05 < (source - target).abs().max()


def test_global_unblend_learns_colour_and_opacity_from_the_true_mask_only():
    model = remover(image_branch="global_unblend", inside_l1_weight=10.0, gan_weight=0.0)
    batch = marked_batch()
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    loss, stats = model.g_loss(fake, cond, batch["target"])
    truth = batch["mask"]
    pooled_over_truth = global_unblend(batch["source"], *fake.unblend_maps, truth)
    inside, _ = masked_l1(pooled_over_truth, batch["target"], truth)
    torch.testing.assert_close(stats["train/g_l1_inside"], inside)
    colour, opacity = fake.unblend_maps
    # the image's own loss reaches the mask head, not the colour and opacity
    image_grads = torch.autograd.grad(
        F.l1_loss(fake, batch["target"]),
        [colour, opacity, fake.mask_probability],
        allow_unused=True,
    )
    assert image_grads[0] is None and image_grads[1] is None and image_grads[2].abs().sum() > 0
    inside_grads = torch.autograd.grad(stats["train/g_l1_inside"], [colour, opacity])
    assert all(g.abs().sum() > 0 for g in inside_grads)


def test_bce_dice_adds_the_soft_dice_of_the_mask_head():
    model = remover(mask_loss="bce_dice", mask_pos_weight=4.0, gan_weight=0.0)
    batch = marked_batch()
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    loss, stats = model.g_loss(fake, cond, batch["target"])
    probability, truth = fake.mask_probability, batch["mask"]
    logit = torch.logit(probability, eps=1e-6)
    weighted = -(4.0 * truth * F.logsigmoid(logit) + (1 - truth) * F.logsigmoid(-logit)).mean()
    assert torch.allclose(stats["train/g_mask_bce"], weighted, atol=1e-5)
    per_image = 1 - (2 * (probability * truth).flatten(1).sum(1) + 1) / (
        probability.flatten(1).sum(1) + truth.flatten(1).sum(1) + 1
    )
    assert torch.allclose(stats["train/g_mask_dice"], per_image.mean(), atol=1e-5)
    expected = 100 * stats["train/g_l1"] + stats["train/g_mask_bce"] + stats["train/g_mask_dice"]
    assert torch.allclose(loss, expected, atol=1e-4)


def test_soft_dice_is_0_for_the_true_mask_and_asks_for_nothing_on_clean_images():
    truth = marked_batch()["mask"]
    assert soft_dice_loss(truth, truth).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(1 - truth, truth).item() > 0.99
    empty = torch.zeros(2, 1, 8, 8)
    assert soft_dice_loss(empty, empty).item() == 0.0
    assert soft_dice_loss(torch.full((2, 1, 8, 8), 0.5), empty).item() > 0.9


def test_inside_l1_scores_the_raw_prediction_on_the_true_mask_only():
    model = remover(inside_l1_weight=10.0, gan_weight=0.0)
    batch = marked_batch()
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    loss, stats = model.g_loss(fake, cond, batch["target"])
    inside, _ = masked_l1(fake.prediction, batch["target"], batch["mask"])
    assert torch.allclose(stats["train/g_l1_inside"], inside)
    assert torch.allclose(
        loss, 100 * stats["train/g_l1"] + stats["train/g_mask_bce"] + 10 * inside, atol=1e-4
    )
    # the raw prediction outside the true mask does not enter this term
    moved = fake.prediction.detach().clone() + (1 - batch["mask"]) * 0.5
    assert torch.equal(masked_l1(moved, batch["target"], batch["mask"])[0], inside)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mask_loss": "dice"}, r"model.mask_loss='dice' is not supported; accepted: 'bce', "),
        ({"mask_pos_weight": 0.0}, r"model.mask_pos_weight=0.0 must be > 0"),
        (
            {"image_branch": "delta"},
            r"model.image_branch='delta' is not supported; accepted: 'clean', 'residual', "
            r"'unblend', 'global_unblend'",
        ),
        (
            {"image_branch": "global_unblend", "mask_weight": 0.0},
            r"'global_unblend' reads the mask head as the watermark's coverage; set "
            r"model.mask_weight > 0",
        ),
        (
            {"image_branch": "global_unblend"},
            r"learns the watermark's colour and opacity from model.inside_l1_weight's term alone",
        ),
        (
            {"image_branch": "global_unblend", "composite_with_mask": True, "inside_l1_weight": 1},
            r"model.composite_with_mask=true does not apply to model.image_branch=",
        ),
        ({"inside_l1_weight": -1.0}, r"model.inside_l1_weight=-1.0 must be >= 0"),
        (
            {"inside_l1_weight": 1.0, "mask_weight": 0.0},
            r"model.inside_l1_weight=1.0 needs the mask head \(model.mask_weight > 0\)",
        ),
    ],
)
def test_bad_mask_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        remover(**options)


# ---------------------------------------------------------------------- the training watermarks
def test_random_text_never_holds_a_test_word():
    rng = np.random.default_rng(0)
    texts = [degradations.random_text(rng) for _ in range(300)]
    assert len(set(texts)) > 250
    assert not [t for t in texts for w in degradations.TEST_WORDS if w.lower() in t.lower()]
    # the filter itself: strings holding an avoided word are drawn again
    vowels = [degradations.random_text(rng, avoid=tuple("aeiou")) for _ in range(50)]
    assert not [t for t in vowels if set(t.lower()) & set("aeiou")]


def test_varied_watermarks_draw_procedural_shapes_and_stay_in_the_mask():
    clean = np.full((64, 64, 3), 120, np.uint8)
    rng = np.random.default_rng(0)
    for name in degradations.PROCEDURAL_LOGOS:
        assert degradations._procedural_logo(name, rng).max() == 255
    for _ in range(30):
        marked, mask = degradations.add_watermark(clean, rng, varied=True)
        change = np.abs(marked.astype(int) - 120).max(axis=-1)
        assert change[~mask].max() == 0 and mask.sum() >= degradations.MIN_MASK_PIXELS


def test_varied_training_watermarks_leave_the_test_split_unchanged(tmp_path):
    fixed = prepare_photos("watermark", tmp_path / "fixed", 6, 4, seed=1)
    varied = prepare_photos("watermark", tmp_path / "varied", 6, 4, 1, train_watermarks="varied")
    for file in sorted((fixed / "test").rglob("*.png")):
        assert file.read_bytes() == (varied / file.relative_to(fixed)).read_bytes(), file
    train = sorted((fixed / "train" / "Watermarked_image").glob("*.png"))
    differs = [f.read_bytes() != (varied / f.relative_to(fixed)).read_bytes() for f in train]
    assert any(differs)
    with pytest.raises(DataError, match=r"train_watermarks='fixed'.*train_watermarks='varied'"):
        prepare_photos("watermark", fixed, 6, 4, 1, train_watermarks="varied")


def test_bad_train_watermarks_are_refused(tmp_path):
    with pytest.raises(
        DataError, match=r"train_watermarks='all' is not supported; accepted: 'fixed', 'varied'"
    ):
        prepare_photos("watermark", tmp_path / "a", 2, 2, train_watermarks="all")
    with pytest.raises(DataError, match=r"applies to task 'watermark' only, not 'sr4'"):
        prepare_photos("sr4", tmp_path / "b", 2, 2, train_watermarks="varied")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

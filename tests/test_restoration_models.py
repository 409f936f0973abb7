"""Inpainting and watermark-removal GANs, and the denoising config: the masked L1 terms, the
composite that keeps known pixels, the watermark mask head, the option checks and the configs."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import nn

from ganlab.baselines import inpaint_biharmonic
from ganlab.errors import ConfigError
from ganlab.losses import BCELoss, DiffAugment, GradientPenalty, HingeLoss, LSGANLoss
from ganlab.models import InpaintingGAN, PairedTranslationGAN, WatermarkRemovalGAN
from ganlab.models.restoration import masked_l1, sn_patchgan_discriminator
from ganlab.networks import GatedInpaintingGenerator, PatchGANDiscriminator, UnetGenerator
from ganlab.networks.inpainting import harmonic_fill
from tests.conftest import compose_config
from tests.training import changed, fit, snapshot

ADAM = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))
SMALL_UNET = partial(UnetGenerator, num_downs=5, base_width=8, dropout=False)  # 32x32 inputs


def inpainter(**options) -> InpaintingGAN:
    torch.manual_seed(0)
    options.setdefault("generator", GatedInpaintingGenerator(3, base_width=8, composite=False))
    return InpaintingGAN(
        discriminator=sn_patchgan_discriminator(4, base_width=8, n_layers=1),
        loss=HingeLoss(),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        **options,
    )


def watermark_remover(**options) -> WatermarkRemovalGAN:
    torch.manual_seed(0)
    options.setdefault("generator", SMALL_UNET)
    return WatermarkRemovalGAN(
        discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
        **options,
    )


def holes(count: int, size: int) -> dict[str, torch.Tensor]:
    """Random images with a random square hole each; `source` is the target with the hole at 0."""
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(count, 3, size, size, generator=generator) * 2 - 1
    mask = torch.zeros(count, 1, size, size)
    corners = torch.randint(0, size // 2, (count, 2), generator=generator)
    for index, (top, left) in enumerate(corners.tolist()):
        mask[index, :, top : top + size // 3, left : left + size // 3] = 1
    return {"source": target * (1 - mask), "target": target, "mask": mask}


def watermarked_noise(count: int, size: int = 32) -> dict[str, torch.Tensor]:
    """Noise images with a bright 8x8 square pasted at a random place: the mask head's toy."""
    generator = torch.Generator().manual_seed(2)
    target = torch.rand(count, 3, size, size, generator=generator) * 1.2 - 0.9
    mask = torch.zeros(count, 1, size, size)
    corners = torch.randint(0, size - 8, (count, 2), generator=generator)
    for index, (top, left) in enumerate(corners.tolist()):
        mask[index, :, top : top + 8, left : left + 8] = 1
    source = target * (1 - mask) + 0.9 * mask
    return {"source": source, "target": target, "mask": mask}


# ---------------------------------------------------------------------- inpainting
def test_masked_l1_averages_over_each_regions_own_pixels_and_channels():
    target = torch.zeros(1, 2, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # one missing pixel of four
    hole, valid = masked_l1(prediction, target, mask)
    assert hole.item() == (1 + 5) / 2
    assert valid.item() == (2 + 3 + 4 + 6 + 7 + 8) / 6
    hole, valid = masked_l1(prediction, target, torch.zeros_like(mask))  # no hole at all
    assert hole.item() == 0 and valid.item() == 36 / 8


def test_inpainting_g_loss_weighs_hole_and_valid_terms_on_the_raw_prediction():
    model = inpainter(hole_weight=6.0, valid_weight=1.0, gan_weight=0.0)
    batch = holes(4, 16)
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    loss, stats = model.g_loss(fake, cond, batch["target"])
    hole, valid = masked_l1(fake.prediction, batch["target"], batch["mask"])
    assert torch.equal(stats["train/g_l1_hole"], hole)
    assert torch.equal(stats["train/g_l1_valid"], valid)
    assert torch.allclose(loss, 6.0 * hole + 1.0 * valid)
    # The composite equals the target outside the hole: the valid term must come from the raw
    # prediction, or it would be 0 and teach nothing.
    assert masked_l1(fake, batch["target"], batch["mask"])[1].item() == 0
    assert valid.item() > 0.1


def test_inpainting_training_updates_both_players_and_d_sees_image_and_mask():
    model = inpainter()
    seen = []
    model.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    fit(model, holes(16, 16), steps=2)
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    assert model.g_steps == model.d_steps == 2
    assert seen and set(seen) == {4}


def test_translate_keeps_the_known_pixels_exactly_and_fills_the_hole():
    model = inpainter()
    batch = holes(5, 16)
    images = batch["target"]  # the hole's values are ignored, whatever they are
    filled = model.translate(images, batch["mask"], batch_size=2)
    known = batch["mask"].expand_as(images) == 0
    assert filled.shape == images.shape and filled.dtype == torch.float32
    assert torch.equal(filled[known], images[known])
    assert not torch.equal(filled[~known], images[~known])
    bool_masks = model.translate(images, batch["mask"].bool(), batch_size=2)
    assert torch.equal(bool_masks, filled)


def test_translate_needs_masks_of_the_images_shape_holding_zeros_and_ones():
    model = inpainter()
    images = holes(2, 16)["target"]
    with pytest.raises(ConfigError, match=r"needs the hole mask .* translate\(images, masks\)"):
        model.translate(images)
    with pytest.raises(ConfigError, match=r"masks of shape \(2, 3, 16, 16\) .* \(2, 1, 16, 16\)"):
        model.translate(images, torch.zeros(2, 3, 16, 16))
    with pytest.raises(ConfigError, match="only 0 .* and 1"):
        model.translate(images, torch.full((2, 1, 16, 16), 0.5))
    with pytest.raises(ConfigError, match=r"needs the hole mask"):
        model.condition({"source": images, "target": images})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hole_weight": -1.0}, r"model.hole_weight=-1.0 must be >= 0"),
        ({"valid_weight": -0.5}, r"model.valid_weight=-0.5 must be >= 0"),
        ({"gan_weight": -1.0}, r"model.gan_weight=-1.0 must be >= 0"),
        ({"l1_weight": 100.0}, r"model.l1_weight does not apply .*model.hole_weight"),
        (
            {"hole_weight": 0.0, "valid_weight": 0.0, "gan_weight": 0.0},
            r"hole_weight, model.valid_weight and model.gan_weight are all 0",
        ),
        ({"test_mode": "test"}, r"model.test_mode='test' is not supported; accepted"),
        (
            {"generator": GatedInpaintingGenerator(3, base_width=8, composite=True)},
            r"model.generator.composite=true: .* set model.generator.composite=false",
        ),
        (
            {"generator": UnetGenerator(3, 3, num_downs=5, base_width=8)},
            r"model.generator \(UnetGenerator\) takes the image alone, .* \(image, mask\)",
        ),
    ],
)
def test_bad_inpainting_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        inpainter(**options)


def test_harmonic_fill_keeps_known_pixels_ignores_the_hole_and_continues_smooth_images():
    batch = holes(3, 32)
    noisy_hole = batch["target"]  # the same known pixels, other values in the hole
    filled = harmonic_fill(batch["source"], batch["mask"])
    known = batch["mask"].expand_as(filled) == 0
    assert torch.equal(filled[known], batch["source"][known])
    assert torch.equal(harmonic_fill(noisy_hole, batch["mask"]), filled)
    # A ramp is harmonic: the fill continues it into the hole; a zero fill is far off.
    ramp = torch.linspace(-0.8, 0.8, 32).expand(3, 3, 32, 32).contiguous()
    error = (harmonic_fill(ramp, batch["mask"], iterations=40) - ramp).abs().max()
    assert error < 0.02, error
    assert (ramp * (1 - batch["mask"]) - ramp).abs().max() > 0.3
    assert torch.allclose(
        harmonic_fill(torch.full((1, 3, 8, 8), 0.25), batch["mask"][:1, :, :8, :8]),
        torch.full((1, 3, 8, 8), 0.25),
    )


@pytest.mark.parametrize(
    "hole_fill, skip", [("harmonic", False), ("biharmonic", False), ("both", True)]
)
def test_a_residual_generator_starts_at_its_fill_and_its_composite_keeps_known_pixels(
    hole_fill, skip
):
    torch.manual_seed(0)
    batch = holes(4, 16)
    fills = {
        "harmonic": lambda: harmonic_fill(batch["source"], batch["mask"], 5),
        "biharmonic": lambda: inpaint_biharmonic(batch["source"], batch["mask"]),
    }
    fills["both"] = fills["biharmonic"]  # the harmonic fill is an input beside it
    generator = GatedInpaintingGenerator(
        base_width=8,
        composite=False,
        hole_fill=hole_fill,
        fill_iterations=5,
        output="residual",
        init="he",
        skip=skip,
    )
    prediction = generator(batch["target"], batch["mask"])  # the hole's values are ignored
    assert torch.equal(prediction, fills[hole_fill]())
    model = inpainter(generator=generator)
    fit(model, holes(16, 16), steps=2)  # the last conv leaves 0: the prediction moves
    filled = model.translate(batch["target"], batch["mask"], batch_size=2)
    known = batch["mask"].expand_as(filled) == 0
    assert torch.equal(filled[known], batch["target"][known])
    assert not torch.equal(filled, fills[hole_fill]())


def test_he_init_keeps_the_gated_features_alive_through_the_network():
    def feature_scale(init: str) -> float:  # what the last conv sees
        torch.manual_seed(0)
        generator = GatedInpaintingGenerator(base_width=8, init=init)
        image, mask = holes(2, 32)["source"], holes(2, 32)["mask"]
        features = generator.model[:-2](torch.cat([image, mask], 1))
        return features.std(dim=(2, 3)).mean().item()

    assert feature_scale("he") > 0.1
    assert feature_scale("torch") < 0.01  # mostly the biases: nothing to learn from


def test_the_long_skip_feeds_the_network_input_to_the_last_conv():
    both = GatedInpaintingGenerator(base_width=8, hole_fill="both", skip=True)
    assert both.model[0].conv.in_channels == 3 + 3 + 1  # biharmonic, harmonic fill, mask
    assert both.model[-2].in_channels == 4 + 7  # the features and the network input
    image, mask = holes(2, 16)["source"], holes(2, 16)["mask"]
    inputs = torch.cat([image, mask], 1).requires_grad_(True)
    plain = GatedInpaintingGenerator(base_width=8, skip=True)
    torch.nn.init.zeros_(plain.model[-2].weight[:, :4])  # the features' weights: the skip alone
    out = plain.model[-1](plain.model[-2](torch.cat([plain.model[:-2](inputs), inputs], 1)))
    out[0, 0, 8, 8].backward()
    assert inputs.grad[0, :, 7:10, 7:10].abs().sum() > 0  # a 3x3 window of the input itself
    assert inputs.grad[0, :, :6].abs().sum() == 0


def test_fewer_downsamplings_keep_the_resolution_and_accept_any_multiple():
    torch.manual_seed(0)
    full = GatedInpaintingGenerator(base_width=8, downsamplings=0)
    assert full.size_multiple == 1
    assert GatedInpaintingGenerator(base_width=8).size_multiple == 4
    image = torch.rand(1, 3, 10, 10) * 2 - 1
    assert full(image, torch.zeros(1, 1, 10, 10)).shape == (1, 3, 10, 10)
    assert not any(isinstance(m, nn.Upsample) for m in full.modules())


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"hole_fill": "mean"},
            r"model.generator.hole_fill='mean' is not supported; accepted: 'zero', 'harmonic', "
            "'biharmonic', 'both'",
        ),
        (
            {"output": "delta"},
            r"model.generator.output='delta' is not supported; accepted: 'image', 'residual'",
        ),
        ({"fill_iterations": -1}, r"model.generator.fill_iterations=-1 must be an integer >= 0"),
        ({"fill_iterations": 2.5}, r"model.generator.fill_iterations=2.5 must be an integer >= 0"),
        (
            {"init": "xavier"},
            r"model.generator.init='xavier' is not supported; accepted: 'he', 'torch'",
        ),
        (
            {"downsamplings": 3},
            r"model.generator.downsamplings=3 is not supported; accepted: 0, 1, 2",
        ),
    ],
)
def test_bad_inpainting_generator_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        GatedInpaintingGenerator(base_width=8, **options)


def test_a_discriminator_without_the_mask_channel_is_refused():
    model = inpainter()
    image = torch.zeros(2, 3, 16, 16)
    model.check_discriminator_input(image, image)  # 3 + mask = 4: fits
    model.conditional_d = False
    with pytest.raises(ConfigError, match=r"takes 4 input channels, .* image: 3 channels"):
        model.check_discriminator_input(image, image)


def test_sn_patchgan_has_no_norm_layers_and_every_conv_spectrally_normalized():
    network = sn_patchgan_discriminator(4, base_width=8, n_layers=2)
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(conv, "parametrizations") for conv in convs)
    assert not any(isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) for m in network.modules())
    assert network(torch.zeros(1, 4, 32, 32)).shape[1] == 1


# ---------------------------------------------------------------------- watermark removal
def test_the_mask_head_learns_where_the_watermark_is():
    model = watermark_remover(gan_weight=0.0)  # the head's learning, without D's noise
    data = watermarked_noise(16)
    fit(model, data, steps=20)
    model.eval()
    with torch.no_grad():
        fake = model.generate(None, model.make_condition(data["source"], None))
    found = fake.mask_probability > 0.5
    truth = data["mask"] > 0.5
    iou = (found & truth).sum() / (found | truth).sum()
    assert fake.shape == (16, 3, 32, 32)
    assert iou > 0.5, iou  # 0.07 as initialised, 0.77 after these 20 steps
    assert model.translate(data["source"][:3]).shape == (3, 3, 32, 32)


def test_the_composite_keeps_what_the_head_calls_clean():
    model = watermark_remover()
    data = watermarked_noise(2)
    fake = model.generate(None, model.make_condition(data["source"], None))
    expected = data["source"] * (1 - fake.mask_probability)
    raw = model.generator(data["source"])[:, :3]
    expected = expected + raw * fake.mask_probability
    assert torch.allclose(fake, expected, atol=1e-6)
    loss, stats = model.g_loss(fake, model.condition(data), data["target"])
    assert {"train/g_l1", "train/g_gan", "train/g_mask_bce"} <= set(stats)
    total = stats["train/g_gan"] + 100 * stats["train/g_l1"] + stats["train/g_mask_bce"]
    assert torch.allclose(loss, total)


def test_mask_weight_0_is_plain_pix2pix_with_a_3_channel_u_net():
    model = watermark_remover(mask_weight=0.0)
    last = [m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d)][-1]
    assert last.out_channels == 3
    with_head = watermark_remover()
    last = [m for m in with_head.generator.modules() if isinstance(m, nn.ConvTranspose2d)][-1]
    assert last.out_channels == 4
    data = watermarked_noise(2)
    cond = model.condition({"source": data["source"], "target": data["target"]})  # no mask
    assert torch.equal(model.generate(None, cond), model.generator(data["source"]))
    d_before = snapshot(model.discriminator)
    fit(model, {"source": data["source"], "target": data["target"]}, steps=1)
    assert changed(d_before, model.discriminator)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mask_weight": -1.0}, r"model.mask_weight=-1.0 must be >= 0"),
        (
            {"mask_weight": 0.0, "composite_with_mask": True},
            r"model.composite_with_mask=true needs the mask head \(model.mask_weight > 0\)",
        ),
        ({"l1_weight": -2.0}, r"model.l1_weight=-2.0 must be >= 0"),
    ],
)
def test_bad_watermark_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        watermark_remover(**options)


def test_generator_channels_are_the_models_to_set():
    with pytest.raises(ConfigError, match=r"model.generator.out_channels is set by .* remove it"):
        WatermarkRemovalGAN(
            generator=partial(UnetGenerator, out_channels=3, num_downs=5, base_width=8),
            discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
            loss=BCELoss(),
            g_optimizer=ADAM,
            d_optimizer=ADAM,
        )
    with pytest.raises(ConfigError, match=r"cannot be built with channels=3, out_channels=4"):
        watermark_remover(generator=partial(PatchGANDiscriminator, base_width=8))
    built = WatermarkRemovalGAN(  # a built network without the mask channel
        generator=UnetGenerator(3, 3, num_downs=5, base_width=8),
        discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=ADAM,
        d_optimizer=ADAM,
    )
    with pytest.raises(ConfigError, match=r"returns 3 channels, .* out_channels=4"):
        built.translate(torch.zeros(1, 3, 32, 32))


def test_the_mask_head_needs_masks_in_the_batches():
    model = watermark_remover()
    data = watermarked_noise(2)
    with pytest.raises(ConfigError, match=r"model.mask_weight=1.0 .* \['source', 'target'\]"):
        model.condition({"source": data["source"], "target": data["target"]})


# ---------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, overrides, model_class, loss_class",
    [
        ("inpainting", [], InpaintingGAN, HingeLoss),
        ("inpainting", ["loss=lsgan", "regularizers=gp", "augment=diffaugment"], None, LSGANLoss),
        ("denoise", [], PairedTranslationGAN, BCELoss),
        ("denoise", ["loss=hinge", "augment=diffaugment"], None, HingeLoss),
        ("watermark", [], WatermarkRemovalGAN, BCELoss),
        ("watermark", ["loss=lsgan", "regularizers=gp"], None, LSGANLoss),
    ],
)
def test_configs_compose_with_the_option_groups_and_build(
    tmp_path, name, overrides, model_class, loss_class
):
    cfg = compose_config([f"model={name}", *overrides], tmp_path)
    with open_dict(cfg):
        cfg.data.channels = 3  # the model configs read the data's channels
        cfg.model.generator.base_width = 8
        cfg.model.discriminator.base_width = 8
    model = instantiate(cfg.model)
    assert type(model) is (model_class or type(model)) and type(model.loss) is loss_class
    assert isinstance(model.augment, DiffAugment) == ("augment=diffaugment" in overrides)
    assert [type(r) for r in model.d_regularizers] == (
        [GradientPenalty] if "regularizers=gp" in overrides else []
    )
    torch.manual_seed(0)
    batch = holes(2, 64)
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    assert fake.shape == (2, 3, 64, 64)
    d_loss, _ = model.d_loss(batch["target"], fake.detach(), cond)
    penalties = [r(model, batch["target"], fake.detach(), cond) for r in model.d_regularizers]
    g_loss, _ = model.g_loss(fake, cond, batch["target"])
    assert all(torch.isfinite(value) for value in [d_loss, g_loss, *penalties])


def test_inpaint_photos_refines_a_biharmonic_fill_with_a_small_gan_term(tmp_path):
    cfg = compose_config(["experiment=inpaint_photos"], tmp_path)
    with open_dict(cfg):
        cfg.data.channels = 3
    model = instantiate(cfg.model)
    generator = model.generator
    assert (generator.hole_fill, generator.output, generator.skip) == ("both", "residual", True)
    assert (model.hole_weight, model.valid_weight, model.gan_weight) == (1.0, 0.0, 0.001)
    batch = holes(2, 64)
    prediction = model.generate(None, model.condition(batch)).prediction
    assert torch.equal(prediction, inpaint_biharmonic(batch["source"], batch["mask"]))

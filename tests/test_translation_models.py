"""PairedTranslationGAN (pix2pix) and what the base gives every translation model: player groups,
`translate`, the test-time mode, the input-size and data checks, the linear LR decay."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses import BCELoss
from ganlab.models import LinearDecay, PairedTranslationGAN
from ganlab.models.base import network_members
from ganlab.networks import PatchGANDiscriminator, UnetGenerator
from tests.training import changed, fit, snapshot


def pix2pix(**options) -> PairedTranslationGAN:
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))
    return PairedTranslationGAN(
        generator=UnetGenerator(3, 3, num_downs=5, base_width=8, dropout=False),
        discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=adam,
        d_optimizer=adam,
        **options,
    )


def inverted_pairs(count: int = 32, size: int = 32) -> dict[str, torch.Tensor]:
    """Smooth random images and their colour negatives: a mapping a U-Net learns in a few steps."""
    torch.manual_seed(1)
    source = nn.functional.interpolate(torch.rand(count, 3, 4, 4) * 2 - 1, size=size)
    return {"source": source, "target": -source}


def test_training_updates_both_players_and_learns_the_mapping():
    model = pix2pix(l1_weight=100.0)
    data = inverted_pairs()
    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    start = nn.functional.l1_loss(model.translate(data["source"]), data["target"]).item()
    fit(model, data, steps=40)
    end = nn.functional.l1_loss(model.translate(data["source"]), data["target"]).item()
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    assert model.g_steps == model.d_steps == 40
    assert end < 0.5 * start, (start, end)


def test_l1_alone_never_trains_the_discriminator():
    model = pix2pix(gan_weight=0.0)
    d_before = snapshot(model.discriminator)
    g_before = snapshot(model.generator)
    fit(model, inverted_pairs(), steps=5)
    assert changed(g_before, model.generator)
    assert not changed(d_before, model.discriminator)
    assert model.g_steps == 5 and model.images_seen == 40


def test_g_loss_is_the_weighted_sum_of_its_terms():
    model = pix2pix(l1_weight=7.0, gan_weight=0.5)
    data = inverted_pairs(4)
    fake = model.generate(None, data["source"])
    loss, stats = model.g_loss(fake, data["source"], data["target"])
    expected = 0.5 * stats["train/g_gan"] + 7.0 * stats["train/g_l1"]
    assert torch.allclose(loss, expected)
    assert torch.allclose(stats["train/g_l1"], (fake - data["target"]).abs().mean())
    assert "train/g_l2" not in stats  # off by default: pix2pix's loss is unchanged


def test_l2_weight_adds_the_mean_squared_error():
    model = pix2pix(l1_weight=0.0, l2_weight=3.0, gan_weight=0.25)
    data = inverted_pairs(4)
    fake = model.generate(None, data["source"])
    loss, stats = model.g_loss(fake, data["source"], data["target"])
    assert torch.allclose(stats["train/g_l2"], (fake - data["target"]).pow(2).mean())
    assert torch.allclose(loss, 0.25 * stats["train/g_gan"] + 3.0 * stats["train/g_l2"])


def test_conditional_discriminator_sees_source_and_image():
    model = pix2pix()
    seen = []
    model.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    data = inverted_pairs(2)
    model.discriminate(data["target"], data["source"])
    assert seen == [6]


def test_translate_keeps_input_order_and_batching_does_not_matter():
    model = pix2pix()
    source = inverted_pairs(6)["source"]
    whole = model.translate(source, batch_size=16)
    pieces = model.translate(source, batch_size=4)
    reversed_order = model.translate(source.flip(0), batch_size=3)
    assert whole.shape == (6, 3, 32, 32) and whole.dtype == torch.float32
    assert torch.allclose(whole, pieces, atol=1e-6)
    assert torch.allclose(whole, reversed_order.flip(0), atol=1e-6)
    assert whole.abs().max() <= 1


def test_test_mode_train_uses_each_images_statistics_and_changes_nothing():
    model = pix2pix(test_mode="train")
    source = inverted_pairs(4)["source"]
    running = {k: v.clone() for k, v in model.generator.state_dict().items() if "running" in k}
    alone = torch.cat([model.translate(source[i : i + 1]) for i in range(4)])
    together = model.translate(source, batch_size=4)
    assert torch.allclose(alone, together, atol=1e-6)  # one image at a time either way
    for key, value in model.generator.state_dict().items():
        if key in running:
            assert torch.equal(value, running[key]), key
    eval_mode = pix2pix(test_mode="eval").translate(source)
    assert not torch.allclose(eval_mode, together, atol=1e-3)  # the mode is not a no-op
    assert model.generator.training  # the module's own mode is left as it was


def test_input_sizes_the_unet_cannot_take_are_refused_with_sizes_that_work():
    model = pix2pix()
    with pytest.raises(ConfigError, match=r"48x32 do not fit UnetGenerator.*multiples of 32"):
        model.translate(torch.zeros(1, 3, 48, 32))


def test_latent_sampling_is_refused_with_the_command_to_use():
    with pytest.raises(ConfigError, match="inputs=FOLDER_OR_NPZ"):
        pix2pix().sample(4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"l1_weight": -1.0}, "model.l1_weight=-1.0 must be >= 0"),
        ({"l2_weight": -2.0}, "model.l2_weight=-2.0 must be >= 0"),
        ({"l1_weight": 0.0, "gan_weight": 0.0}, "l2_weight and model.gan_weight are all 0"),
        ({"test_mode": "inference"}, "model.test_mode='inference' is not supported"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        pix2pix(**options)


class PairedShapes:
    """What a translation datamodule declares about its shapes."""

    name = "pairs"

    def __init__(self, source_shape, sample_shape):
        self.source_shape, self.sample_shape = source_shape, sample_shape


def test_data_checks_name_the_mismatch_before_training():
    model = pix2pix()
    model.check_data_compatibility(PairedShapes((3, 32, 32), (3, 32, 32)))  # fits
    with pytest.raises(ConfigError, match=r"to \(3, 32, 32\), but its targets have shape"):
        model.check_data_compatibility(PairedShapes((3, 32, 32), (1, 32, 32)))
    with pytest.raises(ConfigError, match="40x32 do not fit"):
        model.check_data_compatibility(PairedShapes((3, 40, 32), (3, 40, 32)))
    wrong_d = pix2pix()
    wrong_d.discriminator = PatchGANDiscriminator(3, base_width=8, n_layers=2)
    with pytest.raises(ConfigError, match="discriminator.channels=6"):
        wrong_d.check_data_compatibility(PairedShapes((3, 32, 32), (3, 32, 32)))


def test_player_groups_are_watched_network_by_network():
    group = nn.ModuleDict({"a_to_b": nn.Linear(2, 2), "b_to_a": nn.Linear(2, 2)})
    assert list(network_members("generator", group)) == ["generator.a_to_b", "generator.b_to_a"]
    model = pix2pix()
    model.generator = group
    assert set(model.watched_networks()) == {
        "generator.a_to_b",
        "generator.b_to_a",
        "discriminator",
    }


def test_linear_decay_matches_the_official_policy():
    policy = LinearDecay(constant_epochs=3, decay_epochs=4)
    assert [policy(e) for e in range(9)] == pytest.approx([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.0])
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, policy)
    saved = scheduler.state_dict()
    assert saved["lr_lambdas"] == [{"constant_epochs": 3, "decay_epochs": 4}]
    with pytest.raises(ConfigError, match="decay_epochs=-1"):
        LinearDecay(3, -1)

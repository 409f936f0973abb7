"""Progressive growing: the exact identities of its building blocks (float64), the growth
schedule, the optimizer resets, resume inside a fade, and its configs."""

import functools
import json
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from ganlab.data.digits import DigitsDataModule
from ganlab.errors import ConfigError
from ganlab.losses import GradientPenalty, WassersteinLoss, wasserstein_d_loss
from ganlab.metrics.fidelity import FeatureExtractor, scores_from_features
from ganlab.models import ProGAN
from ganlab.models.progan import GrowthSchedule, fade_reals
from ganlab.networks import DCGANDiscriminator, ProGANDiscriminator, ProGANGenerator
from ganlab.networks.progan import (
    EqualizedConv2d,
    EqualizedLinear,
    downsample,
    pixel_norm,
    upsample,
)
from ganlab.sample import sample as ganlab_sample
from ganlab.speed import compile_network
from ganlab.train import train
from tests.conftest import compose_config
from tests.test_resume import assert_same_tensors, load
from tests.training import fit

TINY = dict(channels=1, resolution=16, channel_base=64, channel_max=8)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def tiny_networks(dtype=torch.float32, **kwargs):
    generator = ProGANGenerator(latent_dim=8, **TINY).to(dtype)
    discriminator = ProGANDiscriminator(**TINY, **kwargs).to(dtype)
    return generator, discriminator


def tiny_progan(stable_kimg=0.016, fade_kimg=0.032, model_class=ProGAN, **kwargs) -> ProGAN:
    generator, discriminator = tiny_networks()
    settings = dict(
        d_regularizers={"gp": GradientPenalty(10.0, target=1.0)}, ema_warmup=False, **kwargs
    )
    return model_class(
        generator,
        discriminator,
        WassersteinLoss(drift=0.001),
        functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.99)),
        functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.99)),
        latent_dim=8,
        stable_kimg=stable_kimg,
        fade_kimg=fade_kimg,
        **settings,
    )


# ---------------------------------------------------------------------- building blocks
def test_pixel_norm_gives_unit_mean_square_per_pixel_and_is_scale_invariant():
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64) * 7
    y = pixel_norm(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5, 5, dtype=torch.float64))
    torch.testing.assert_close(pixel_norm(y), y)  # idempotent
    torch.testing.assert_close(pixel_norm(3.5 * x), y)


@pytest.mark.parametrize(
    "layer, fan_in",
    [
        (EqualizedLinear(64, 32), 64),
        (EqualizedConv2d(16, 8, 3), 16 * 9),
        (EqualizedConv2d(64, 32, 1), 64),
    ],
)
def test_equalized_layers_store_unit_gaussians_scaled_by_the_he_constant(layer, fan_in):
    assert layer.scale == pytest.approx(math.sqrt(2 / fan_in), rel=1e-15)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.1)
    assert layer.weight.mean().item() == pytest.approx(0.0, abs=0.1)
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_one_adam_step_moves_every_equalized_layer_by_lr_relative_to_its_scale():
    layers = [EqualizedLinear(256, 4).double(), EqualizedConv2d(2, 4, 3).double()]
    inputs = [
        torch.randn(5, 256, dtype=torch.float64),
        torch.randn(5, 2, 6, 6, dtype=torch.float64),
    ]
    for layer, x in zip(layers, inputs, strict=True):
        before = layer.weight.detach().clone()
        optimizer = torch.optim.Adam([layer.weight], lr=1e-3, betas=(0.0, 0.99), eps=1e-30)
        layer(x).square().sum().backward()
        optimizer.step()
        # Adam's first step is lr * sign(grad); the effective weight moves by lr * scale.
        relative = ((layer.weight.detach() - before) * layer.scale).abs() / layer.scale
        torch.testing.assert_close(relative, torch.full_like(relative, 1e-3))


def test_generator_to_rgb_and_first_dense_use_the_official_gains():
    generator, _ = tiny_networks()
    assert generator.to_rgb[0].scale == pytest.approx(
        1 / math.sqrt(generator.to_rgb[0].weight.shape[1])
    )
    assert generator.dense.scale == pytest.approx(math.sqrt(2) / 4 / math.sqrt(8))


@pytest.mark.parametrize("group_size", [2, 4, None])
def test_minibatch_stddev_matches_a_hand_loop(group_size):
    _, discriminator = tiny_networks(torch.float64, mbstd_group_size=group_size)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    out = discriminator.mbstd(x)
    group = group_size or 8
    groups = 8 // group
    for i in range(8):
        members = x[[j for j in range(8) if j % groups == i % groups]]  # i mod (N / G)
        variance = members.var(dim=0, unbiased=False)
        expected = (variance + 1e-8).sqrt().mean()
        torch.testing.assert_close(
            out[i, 3], torch.full((4, 4), expected.item(), dtype=torch.float64)
        )
    torch.testing.assert_close(out[:, :3], x)


# ---------------------------------------------------------------------- fade-in
def test_generator_fade_endpoints_are_the_old_and_the_new_path():
    generator, _ = tiny_networks(torch.float64)
    z = torch.randn(4, 8, dtype=torch.float64)
    for level in (1, 2):
        generator.set_growth(level - 1, 1.0)
        old = generator(z)
        generator.set_growth(level, 0.0)
        assert torch.equal(generator(z), old)  # alpha 0: the upsampled previous level, exactly
        generator.set_growth(level, 1.0)
        feats = generator.features(z, level)
        new = upsample(generator.to_rgb[level](feats[level]), 2 ** (2 - level))
        assert torch.equal(generator(z), new)
        generator.set_growth(level, 0.25)
        torch.testing.assert_close(generator(z), 0.75 * old + 0.25 * new)  # affine in alpha


@pytest.mark.parametrize("level, alpha", [(0, 1.0), (1, 0.5), (2, 1.0)])
def test_exactly_the_active_parameters_get_gradients(level, alpha):
    generator, discriminator = tiny_networks()
    for network in (generator, discriminator):
        network.set_growth(level, alpha)
    discriminator(generator(torch.randn(4, 8))).sum().backward()
    for network in (generator, discriminator):
        active = {id(p) for p in network.active_parameters()}
        with_grad = {id(p) for p in network.parameters() if p.grad is not None}
        assert active == with_grad


def test_discriminator_fade_endpoints_are_the_old_and_the_new_path():
    _, discriminator = tiny_networks(torch.float64)
    images = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    for level in (1, 2):
        discriminator.set_growth(level - 1, 1.0)
        old = discriminator(images)
        discriminator.set_growth(level, 0.0)
        assert torch.equal(discriminator(images), old)
        discriminator.set_growth(level, 1.0)
        new = discriminator(images)
        discriminator.set_growth(level, 0.5)
        assert not torch.allclose(old, new)
        assert torch.isfinite(discriminator(images)).all()


def test_a_compiled_fade_reuses_one_graph_and_matches_the_float_lerp():
    """alpha reaches the forward passes as a tensor updated in place, so one compiled graph per
    network serves every step of a fade (a Python float would be a new constant each step), and
    the outputs equal the fade written with alpha as a float."""
    generator, discriminator = tiny_networks()
    z, images = torch.randn(4, 8), torch.randn(4, 1, 16, 16)

    def float_fade(alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        feats = generator.features(z, 1)
        old = upsample(generator.to_rgb[0](feats[0]))
        image = upsample(torch.lerp(old, generator.to_rgb[1](feats[1]), alpha), 2)
        d = discriminator
        x = torch.lerp(d._from_rgb(images, 0), d._block(d._from_rgb(images, 1), 1), alpha)
        x = nn.functional.leaky_relu(d.conv(d.mbstd(x)), 0.2)
        x = nn.functional.leaky_relu(d.dense(x.flatten(1)), 0.2)
        return image, d.out(x).squeeze(1)

    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    for network, name in ((generator, "generator"), (discriminator, "discriminator")):
        assert compile_network(network, name, backend=counting_backend)
    first_step_graphs = None
    with torch.no_grad():
        for alpha in (0.25, 0.5, 0.75):
            for network in (generator, discriminator):
                network.set_growth(1, alpha)
            image, logits = generator(z), discriminator(images)
            first_step_graphs = first_step_graphs or len(graphs)
            expected_image, expected_logits = float_fade(alpha)
            assert torch.equal(image, expected_image) and torch.equal(logits, expected_logits)
    assert first_step_graphs >= 2 and len(graphs) == first_step_graphs  # no recompilation


def test_faded_reals_blend_the_level_with_its_coarser_version_and_keep_block_means():
    images = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    at_8 = downsample(images, 2)
    coarse = fade_reals(images, level=1, alpha=0.0, max_level=2)  # fading 8x8 in, alpha 0
    assert torch.equal(coarse, upsample(downsample(at_8), 4))  # every 4x4 block constant
    assert torch.equal(fade_reals(images, 1, 1.0, 2), upsample(at_8, 2))
    for alpha in (0.0, 0.3, 1.0):
        faded = fade_reals(images, 1, alpha, 2)
        torch.testing.assert_close(downsample(faded, 8), downsample(images, 8))  # mean kept
    assert torch.equal(fade_reals(images, 2, 1.0, 2), images)


# ---------------------------------------------------------------------- schedule
def test_cifar_schedule_changes_level_at_the_published_image_counts_without_a_jump():
    schedule = GrowthSchedule.from_kimg(400, 400, max_level=3)
    assert schedule.at(0) == (0, 1.0)
    assert schedule.at(400_000) == (0, 1.0)  # the last stable 4x4 step
    level, alpha = schedule.at(400_016)
    assert level == 1 and alpha == pytest.approx(16 / 400_000)
    assert schedule.at(800_000) == (1, 1.0)
    assert schedule.at(1_200_016)[0] == 2 and schedule.at(2_000_016)[0] == 3
    assert schedule.at(2_400_000) == (3, 1.0) and schedule.at(20_000_000) == (3, 1.0)
    # progress = level - 1 + alpha (the official max_level - lod) never jumps and never falls
    progress = [
        level - 1 + alpha if alpha < 1 else level
        for level, alpha in map(schedule.at, range(0, 2_600_000, 16))
    ]
    steps = np.diff(progress)
    assert steps.min() >= 0 and steps.max() <= 16 / 400_000 + 1e-12


def test_schedule_and_growth_refuse_bad_settings():
    with pytest.raises(ConfigError, match=r"model.stable_kimg=-1, model.fade_kimg=0: both"):
        GrowthSchedule.from_kimg(-1, 0, 2)
    with pytest.raises(ConfigError, match="power-of-two resolution >= 4, got data.resolution=24"):
        ProGANGenerator(resolution=24)
    generator, _ = tiny_networks()
    with pytest.raises(ConfigError, match=r"level=3, alpha=1.0: level must be in \[0, 2\]"):
        generator.set_growth(3, 1.0)
    with pytest.raises(ConfigError, match="mbstd_group_size=0 must be an integer >= 1, or null"):
        ProGANDiscriminator(**TINY, mbstd_group_size=0)


def test_module_refuses_networks_that_do_not_grow_or_disagree():
    generator, _ = tiny_networks()
    with pytest.raises(ConfigError, match="model.discriminator is a DCGANDiscriminator; use"):
        ProGAN(generator, DCGANDiscriminator(1, 32, 8), WassersteinLoss(), None, None, latent_dim=8)
    other = ProGANDiscriminator(channels=1, resolution=32, channel_base=64, channel_max=8)
    with pytest.raises(ConfigError, match="grows to 16x16 but the discriminator to 32x32"):
        ProGAN(generator, other, WassersteinLoss(), None, None, latent_dim=8)


# ---------------------------------------------------------------------- loss terms
class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def discriminate(self, x, cond=None):
        return x.flatten(1) @ self.weight + 0.5


@pytest.mark.parametrize("target", [1.0, 750.0])
def test_gradient_penalty_with_a_target_for_a_linear_critic(target):
    direction = torch.randn(48, dtype=torch.float64)
    direction /= direction.norm()
    real = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    fake = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    on_target = GradientPenalty(weight=10.0, target=target)(
        LinearCritic(target * direction), real, fake, None
    )
    assert on_target.item() == pytest.approx(0.0, abs=1e-10)  # D's gradient: float32
    twice = GradientPenalty(weight=10.0, target=target)(
        LinearCritic(2 * target * direction), real, fake, None
    )
    assert twice.item() == pytest.approx(10.0, rel=1e-6)  # lambda * ((2g - g) / g)^2
    with pytest.raises(ConfigError, match="regularizers.gp.target=0 must be > 0"):
        GradientPenalty(target=0)


def test_drift_term_adds_epsilon_times_the_mean_square_real_logit():
    real, fake = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    loss = WassersteinLoss(drift=0.001).d_loss(real, fake)
    expected = fake.mean() - real.mean() + 0.001 * real.square().mean()
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-15)
    assert torch.equal(WassersteinLoss().d_loss(real, fake), wasserstein_d_loss(real, fake))
    with pytest.raises(ConfigError, match="loss.drift=-1 must be >= 0"):
        WassersteinLoss(drift=-1)


# ---------------------------------------------------------------------- training
class RecordingProGAN(ProGAN):
    """Records, at each optimizer reset, the images seen and D's Adam state size around it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resets = []

    def reset_optimizer_states(self):
        d_state = self.optimizers()[1].optimizer.state
        before = len(d_state)
        super().reset_optimizer_states()
        self.resets.append((self.images_seen, before, len(d_state), self.level, self.alpha))


def test_adam_states_are_cleared_at_each_start_and_end_of_a_fade():
    # one step of 8 images at each level, then two fading in the next
    model = tiny_progan(stable_kimg=0.008, fade_kimg=0.016, model_class=RecordingProGAN)
    fit(model, {"image": torch.rand(56, 1, 16, 16) * 2 - 1}, steps=7)
    # images seen at each reset: 8x8 starts fading in (alpha 1/4), 8x8 stable, 16x16 fading
    # in, 16x16 stable; D's Adam held moments before each reset and none right after
    assert [r[0] for r in model.resets] == [16, 24, 40, 48]
    assert all(before > 0 and after == 0 for _, before, after, *_ in model.resets)
    assert [r[3:] for r in model.resets] == [(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]
    assert model.optimizer_resets == 4 and model.images_seen == 56
    assert model.generator_ema.level == model.discriminator.level == 2


def test_samples_mid_training_are_the_current_level_at_the_data_size():
    model = tiny_progan()
    samples = model.sample(3, seed=1)  # level 0: 4x4 images upsampled to 16x16
    assert samples.shape == (3, 1, 16, 16)
    assert torch.equal(samples, upsample(samples[..., ::4, ::4], 4))
    model.set_growth(2, 1.0)
    samples = model.sample(3, seed=1)
    assert not torch.equal(samples, upsample(samples[..., ::2, ::2], 2))


FAST_PROGAN = [
    "model=progan",
    "data=digits",
    "data.resolution=8",
    "model.latent_dim=16",
    "model.generator.channel_max=8",
    "model.discriminator.channel_max=8",
    "trainer.limit_train_batches=3",
]


def test_progan_on_digits_composes_trains_and_samples(make_config, tmp_path):
    cfg = make_config(*FAST_PROGAN, "model.stable_kimg=0.016", "model.fade_kimg=0.032")
    assert cfg.loss.drift == 0.001 and cfg.regularizers.gp.target == 1.0
    model = instantiate(cfg.model)
    assert isinstance(model, ProGAN) and not model.ema_warmup
    train(cfg)
    checkpoint = load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["ganlab"]["progress"]["images_seen"] == 48
    growth = checkpoint["ganlab"]["growth"]
    assert growth == {  # the third step (32 images seen) fades 8x8 in at alpha 1/2
        "level": 1,
        "alpha": 0.5,
        "images_seen": 48,
        "last_phase": [1, True],
        "optimizer_resets": 1,
    }
    assert checkpoint["state_dict"]["generator_ema._extra_state"] == {"level": 1, "alpha": 0.5}
    out = tmp_path / "samples.npz"
    ckpt = f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"
    ganlab_sample(
        compose_config([ckpt, "num_samples=4", f"out={out}", "device=cpu"], tmp_path, "sample")
    )
    assert np.load(out)["samples"].shape == (4, 1, 8, 8)


@pytest.mark.slow
def test_resume_inside_a_fade_equals_straight_through(make_config, tmp_path):
    # 16 images a step, 3 steps an epoch: 4x4 for 64 images, 8x8 fading in over 64 more;
    # the checkpoint after epoch 2 (96 images) is at alpha 1/2, the fade ends in epoch 3.
    common = [*FAST_PROGAN, "model.stable_kimg=0.064", "model.fade_kimg=0.064"]
    train(make_config(*common, "trainer.max_epochs=4", output_dir=tmp_path / "straight"))
    train(make_config(*common, "trainer.max_epochs=2", output_dir=tmp_path / "resumed"))
    half = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    growth = load(half)["ganlab"]["growth"]
    assert (growth["level"], growth["alpha"], growth["optimizer_resets"]) == (1, 0.25, 1)
    resume = f"ckpt_path={half}"
    train(make_config(*common, "trainer.max_epochs=4", resume, output_dir=tmp_path / "resumed"))

    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["ganlab"]["growth"] == resumed["ganlab"]["growth"]
    assert resumed["ganlab"]["growth"]["optimizer_resets"] == 2  # the fade's end, after resume
    assert straight["ganlab"]["progress"] == resumed["ganlab"]["progress"]
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")


def test_experiments_compose_with_their_recipes(make_config):
    cfg = make_config("experiment=progan_cifar10")
    model = instantiate(cfg.model)
    assert isinstance(model, ProGAN)
    assert model.schedule == GrowthSchedule(400_000, 400_000, 3)
    assert cfg.regularizers.gp.target == 750 and cfg.regularizers.gp.weight == 10
    assert cfg.loss.drift == 0.001 and cfg.data.batch_size == 16
    assert model.ema_decay == 0.999 and not model.ema_warmup
    (g_opt, d_opt), _ = model.configure_optimizers()
    assert g_opt.param_groups[0]["lr"] == d_opt.param_groups[0]["lr"] == 1e-3
    assert g_opt.param_groups[0]["betas"] == (0.0, 0.99)
    # the CIFAR-10 networks: 128 channels at every level, latent 128, about 1.3M parameters each
    sizes = [
        sum(p.numel() for p in net.parameters()) for net in (model.generator, model.discriminator)
    ]
    assert sizes == [1_298_828, 1_298_689]
    assert model.discriminator.mbstd_group_size is None
    digits = instantiate(make_config("experiment=progan_digits").model)
    assert isinstance(digits, ProGAN) and digits.generator.max_level >= 1


# ---------------------------------------------------------------------- mechanism run
class FadeProbe(pl.Callback):
    """Digits-FID (the `ganlab-digits` features) of 1,000 EMA samples against the digits' train
    split at 8x8, whenever a step is about to start past one of `at_images`; appended to `out`."""

    def __init__(self, at_images: list[int], out: str):
        self.pending, self.out = sorted(at_images), out
        self.extractor = FeatureExtractor("ganlab-digits", ["fid"])
        reals = DigitsDataModule(resolution=8)._load("train").tensors["image"]
        self.reference = self.extractor.extract(reals.split(500))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not self.pending or module.images_seen < self.pending[0]:
            return
        self.pending.pop(0)
        level, alpha = module.schedule.at(module.images_seen)
        module.set_growth(level, alpha)
        features = self.extractor.extract(module.sample(1000, seed=0).split(500))
        layers = self.extractor.layers
        fid = scores_from_features(["fid"], layers, features, self.reference)["fid"]
        record = {"images_seen": module.images_seen, "level": level, "alpha": alpha, "fid": fid}
        with open(self.out, "a") as file:
            file.write(json.dumps(record) + "\n")


@pytest.mark.mechanism
def test_mechanism_no_quality_jump_across_the_fade_and_exact_resume_inside_it(tmp_path):
    """ProGAN-tiny 4x4 -> 8x8 on the digits: 8 kimg at 4x4, 8 kimg fading 8x8 in, 16 kimg at
    8x8 (batch 32, 44 steps an epoch: 23 epochs). The digits-FID of the EMA generator must not
    jump where the fade starts and ends, must end below its 4x4 value, and a run stopped after
    epoch 8 (mid-fade) and resumed must end exactly as the uninterrupted one."""
    probes = tmp_path / "fid.jsonl"
    common = [
        "experiment=progan_digits",
        "data.resolution=8",
        "model.stable_kimg=8",
        "model.fade_kimg=8",
        "logger=csv",
        "callbacks.sample_quality=null",
        "callbacks.sample_grid=null",
    ]
    at = [7_900, 8_100, 12_000, 15_900, 16_100, 23_900, 31_900]
    probe = [
        "+callbacks.fade_probe._target_=tests.test_progan.FadeProbe",
        f"+callbacks.fade_probe.at_images=[{','.join(map(str, at))}]",
        f"+callbacks.fade_probe.out={probes}",
    ]
    train(compose_config([*common, *probe, "trainer.max_epochs=23"], tmp_path / "straight"))
    train(compose_config([*common, "trainer.max_epochs=8"], tmp_path / "resumed"))
    half = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    growth = load(half)["ganlab"]["growth"]
    assert growth["level"] == 1 and 0 < growth["alpha"] < 1
    resume = f"ckpt_path={half}"
    train(compose_config([*common, "trainer.max_epochs=23", resume], tmp_path / "resumed"))

    records = [json.loads(line) for line in probes.read_text().splitlines()]
    print("\n".join(map(json.dumps, records)))
    fid = [r["fid"] for r in records]
    assert [r["level"] for r in records] == [0, 1, 1, 1, 1, 1, 1]
    assert fid[1] <= 1.25 * fid[0] and fid[4] <= 1.25 * fid[3]  # no jump at the fade's ends
    assert fid[6] < fid[0]  # 8x8 beats 4x4
    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["ganlab"]["growth"] == resumed["ganlab"]["growth"]
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")

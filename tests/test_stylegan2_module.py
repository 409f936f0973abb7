"""The StyleGAN2 training module: lazy regularizers on their intervals, the Adam rescale, EMA by
half-life, truncated sampling, checkpointed w_avg and pl_mean, and its configs."""

import functools
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ganlab.errors import ConfigError
from ganlab.losses import R1, BCELoss
from ganlab.models import StyleGAN2
from ganlab.models.stylegan2 import PathLengthRegularizer, ema_beta
from ganlab.networks import StyleGAN2Discriminator, StyleGAN2Generator
from ganlab.sample import sample as ganlab_sample
from ganlab.train import train
from tests.conftest import compose_config
from tests.training import changed, fit, snapshot

TINY = dict(channels=3, resolution=32, channel_base=64, channel_max=8)


def tiny_stylegan2(**kwargs) -> StyleGAN2:
    settings = dict(ema_kimg=0.1, ema_rampup=None, d_regularizers={"r1": R1(0.01, 16)})
    settings.update(kwargs)
    return StyleGAN2(
        StyleGAN2Generator(latent_dim=8, w_dim=8, mapping_layers=2, style_mixing_prob=0.9, **TINY),
        StyleGAN2Discriminator(mbstd_group_size=4, mapping_layers=2, **TINY),
        BCELoss(),
        functools.partial(torch.optim.Adam, lr=0.0025, betas=(0.0, 0.99)),
        functools.partial(torch.optim.Adam, lr=0.0025, betas=(0.0, 0.99)),
        latent_dim=8,
        **settings,
    )


def random_images(count: int = 16) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(count, 3, 32, 32) * 2 - 1}


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


class CountedRegularizer:
    """A regularizer that counts its applications."""

    def __init__(self, inner):
        self.inner, self.name, self.interval, self.calls = inner, inner.name, inner.interval, 0

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


def test_training_steps_change_generator_discriminator_and_ema():
    model = tiny_stylegan2()
    before = {name: snapshot(getattr(model, name)) for name in ("generator", "discriminator")}
    ema_before = snapshot(model.generator_ema)
    fit(model, random_images(), steps=3)
    assert changed(before["generator"], model.generator)
    assert changed(before["discriminator"], model.discriminator)
    assert changed(ema_before, model.generator_ema)
    assert model.g_steps == model.d_steps == 3
    assert model.path_length.penalty.pl_mean.item() > 0  # updated at G step 0
    w_avg = model.generator.mapping.w_avg
    assert w_avg.abs().sum() > 0  # tracked in train mode, and copied into the EMA generator
    torch.testing.assert_close(model.generator_ema.mapping.w_avg, w_avg, rtol=0, atol=0)


def test_r1_runs_every_16_d_steps_and_path_length_every_4_g_steps():
    model = tiny_stylegan2(ema_kimg=None)
    r1 = model.d_regularizers[0] = CountedRegularizer(model.d_regularizers[0])
    path_length = model.g_regularizers[0] = CountedRegularizer(model.path_length)
    fit(model, {"image": torch.rand(8 * 17, 3, 32, 32)}, steps=17)
    assert model.d_steps == 17
    assert r1.calls == 2  # D steps 0 and 16
    assert path_length.calls == 5  # G steps 0, 4, 8, 12, 16


def test_built_optimizers_carry_the_lazy_regularization_rescale():
    model = tiny_stylegan2()
    (g_opt, d_opt), _ = model.configure_optimizers()
    g_group, d_group = g_opt.param_groups[0], d_opt.param_groups[0]
    assert g_group["lr"] == pytest.approx(0.002)
    assert g_group["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))
    assert g_group["betas"][1] == pytest.approx(0.99199, abs=1e-5)
    assert d_group["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert d_group["betas"][1] == pytest.approx(0.99059, abs=1e-5)
    model = tiny_stylegan2(g_reg_interval=None, d_reg_interval=None, d_regularizers=None)
    (g_opt, d_opt), _ = model.configure_optimizers()
    assert g_opt.param_groups[0]["lr"] == d_opt.param_groups[0]["lr"] == 0.0025


def test_lazy_d_regularizer_must_match_the_rescaled_interval():
    with pytest.raises(ConfigError, match=r"regularizers.r1.interval=8 differs from .*=16"):
        tiny_stylegan2(d_regularizers={"r1": R1(0.01, 8)})


def test_rescale_refuses_optimizers_without_betas():
    model = tiny_stylegan2()
    model.g_optimizer_factory = functools.partial(torch.optim.SGD, lr=0.01)
    with pytest.raises(ConfigError, match="needs an Adam-like optimizer .* got SGD"):
        model.configure_optimizers()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ema_kimg": 0}, "model.ema_kimg=0 must be > 0"),
        ({"ema_rampup": -1}, "model.ema_rampup=-1 must be > 0"),
        ({"noise_mode": "off"}, "noise_mode='off' is not supported; accepted"),
        ({"pl_batch_shrink": 0}, "model.pl_batch_shrink=0 must be an integer >= 1"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny_stylegan2(**kwargs)


def test_ema_beta_halves_a_step_change_after_one_half_life():
    # cifar: batch 64, half-life 500 kimg
    beta = ema_beta(64, 500.0, None, images_seen=0)
    assert beta == pytest.approx(0.5 ** (64 / 500_000))
    assert beta == pytest.approx(0.9999113, abs=1e-7)
    assert beta ** (500_000 / 64) == pytest.approx(0.5)
    assert ema_beta(64, 500.0, 0.05, images_seen=0) == 0.0  # ramp-up: G_ema starts as G
    # ramp-up caps the half-life at 5% of the images seen
    assert ema_beta(64, 500.0, 0.05, images_seen=64_000) == pytest.approx(0.5 ** (64 / 3200))
    assert ema_beta(64, 500.0, 0.05, images_seen=10**9) == pytest.approx(beta)


def test_first_ramped_ema_update_copies_the_generator():
    model = tiny_stylegan2(ema_kimg=10.0, ema_rampup=0.05, pl_weight=0)
    fit(model, random_images(8), steps=1)
    ema, raw = model.generator_ema.parameters(), model.generator.parameters()
    for ema_param, param in zip(ema, raw, strict=True):
        torch.testing.assert_close(ema_param, param, rtol=0, atol=0)


def test_truncation_zero_gives_the_same_image_for_every_seed():
    model = tiny_stylegan2()
    fit(model, random_images(), steps=2)  # a non-zero w_avg
    first = model.sample(2, seed=1, truncation=0.0, noise_mode="const")
    second = model.sample(2, seed=7, truncation=0.0, noise_mode="const")
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[0], first[1], rtol=0, atol=0)
    untruncated = model.sample(2, seed=1, noise_mode="const")
    assert not torch.equal(untruncated[0], untruncated[1])
    assert model.truncation_psi == 1.0  # the call's psi is not kept


def test_checkpoint_holds_and_restores_pl_mean_and_w_avg():
    model = tiny_stylegan2()
    fit(model, random_images(), steps=2)
    state = model.state_dict()
    for key in ("path_length.penalty.pl_mean", "generator.mapping.w_avg"):
        assert state[key].abs().sum() > 0, key
    assert "generator_ema.mapping.w_avg" in state
    resumed = tiny_stylegan2()
    resumed.load_state_dict(state)
    torch.testing.assert_close(
        resumed.path_length.penalty.pl_mean, model.path_length.penalty.pl_mean, rtol=0, atol=0
    )
    torch.testing.assert_close(
        resumed.generator_ema.mapping.w_avg, model.generator_ema.mapping.w_avg, rtol=0, atol=0
    )


def test_path_length_penalty_on_a_shrunk_batch_trains_the_generator():
    model = tiny_stylegan2()
    regularizer = PathLengthRegularizer(weight=2.0, interval=4, decay=0.01, batch_shrink=2)
    seen = []
    regularizer.penalty.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape))
    term = regularizer(model, torch.zeros(8, 3, 32, 32), None, None)
    term.backward()
    assert seen == [torch.Size([4, 3, 32, 32])]
    assert term.item() > 0
    assert all(p.grad is not None for p in model.generator.mapping.parameters())


def test_stylegan2_on_digits_composes_and_trains_conditionally(make_config, tmp_path):
    tiny = ["model.latent_dim=16", "model.generator.w_dim=16"]
    tiny += [
        f"model.{p}.{k}={v}"
        for p in ("generator", "discriminator")
        for k, v in (("channel_base", 64), ("channel_max", 8), ("mapping_layers", 2))
    ]
    cfg = make_config("model=stylegan2", "data=digits", *tiny)
    assert cfg.loss._target_ == "ganlab.losses.BCELoss"
    assert cfg.regularizers.r1.interval == 16
    model = instantiate(cfg.model)
    assert isinstance(model, StyleGAN2) and model.conditional
    train(cfg)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["ganlab"]["progress"]["d_steps"] == 3
    assert "path_length.penalty.pl_mean" in checkpoint["state_dict"]

    # ganlab-sample truncation=psi: psi 1 is no truncation, psi 0 pulls every w to w_avg
    def samples(*overrides: str):
        out = tmp_path / f"samples{len(list(tmp_path.glob('samples*')))}.npz"
        ckpt = f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"
        options = [ckpt, "num_samples=4", f"out={out}", "device=cpu", *overrides]
        ganlab_sample(compose_config(options, tmp_path, "sample"))
        return np.load(out)["samples"]

    plain, psi_one, psi_zero = samples(), samples("truncation=1"), samples("truncation=0")
    assert np.array_equal(plain, psi_one)
    assert not np.allclose(plain, psi_zero)
    with pytest.raises(ConfigError, match="truncation=-1 must be a number >= 0"):
        samples("truncation=-1")


@pytest.mark.parametrize("experiment", ["stylegan2_digits", "stylegan2_cifar10"])
def test_experiments_compose_with_their_recipes(make_config, experiment):
    cfg = make_config(f"experiment={experiment}")
    model = instantiate(cfg.model)
    assert isinstance(model, StyleGAN2)
    (g_opt, d_opt), _ = model.configure_optimizers()
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.002)
    assert d_opt.param_groups[0]["lr"] == pytest.approx(0.0025 * 16 / 17)
    if experiment == "stylegan2_cifar10":
        assert cfg.regularizers.r1.gamma == 0.01 and model.path_length is None
        assert model.ema_kimg == 500 and model.generator.style_mixing_prob == 0
        # the official network sizes (unconditional): G 19.9M, D 20.7M parameters
        sizes = [
            sum(p.numel() for p in instantiate(cfg.model[name], num_classes=None).parameters())
            for name in ("generator", "discriminator")
        ]
        assert sizes == [19_947_539, 20_720_641]


# ---------------------------------------------------------------- mechanism
def digit_figures(checkpoint) -> dict[str, dict]:
    """For the EMA and the raw generator of `checkpoint`: 1,000 samples (100 of each digit, seed
    0), their digits-FID (`ganlab-digits` features against the digits' train split), the share
    classified as the digit asked for (the `ganlab-digits` classifier, trained on the held-out
    split), per digit and overall, and the digits covered: those with a share of at least 50%."""
    from ganlab.checkpoint import load_model
    from ganlab.data.digits import DigitsDataModule
    from ganlab.metrics.extractors import DigitsExtractor
    from ganlab.metrics.fidelity import FeatureExtractor, scores_from_features

    model, _ = load_model(checkpoint, "cpu")
    extractor = FeatureExtractor("ganlab-digits", ["fid"])
    reals = DigitsDataModule(resolution=32)._load("train").tensors["image"]
    reference = extractor.extract(reals.split(500))
    classifier = DigitsExtractor("ganlab-digits", ["logits"])
    wanted = torch.arange(10).repeat_interleave(100)
    figures = {}
    for name, use_ema in (("ema", True), ("raw", False)):
        samples = model.sample(len(wanted), labels=wanted, seed=0, use_ema=use_ema)
        features = extractor.extract(samples.split(500))
        fid = scores_from_features(["fid"], extractor.layers, features, reference)["fid"]
        levels = ((samples + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        with torch.no_grad():
            (logits,) = classifier(levels)
        hits = (logits.argmax(dim=1) == wanted).float()
        per_class = [hits[wanted == k].mean().item() for k in range(10)]
        figures[name] = {
            "fid": fid,
            "agreement": hits.mean().item(),
            "per_class": [round(a, 3) for a in per_class],
            "classes_covered": sum(a >= 0.5 for a in per_class),
        }
    return figures


@pytest.mark.mechanism
def test_mechanism_ema_generator_beats_the_raw_one_and_covers_the_digits(tmp_path):
    """experiment=stylegan2_digits as a user runs it; at the end the EMA generator's digits-FID
    is below the raw one's and it draws at least 8 of the 10 digits (`digit_figures`)."""
    run = tmp_path / "run"
    train(compose_config(["experiment=stylegan2_digits", "logger=csv"], run))
    figures = digit_figures(run / "checkpoints" / "last.ckpt")
    print(json.dumps(figures, indent=1))
    assert figures["ema"]["fid"] < figures["raw"]["fid"]
    assert figures["ema"]["classes_covered"] >= 8

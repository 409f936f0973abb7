"""The BigGAN training module: n_critic D steps on fresh batches, EMA with a start step, the
orthogonal regularization as an extra gradient, truncation and standing statistics at sampling
and evaluation (recorded in the score's protocol), complete resume, and its configs."""

import functools
import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from ganlab.errors import ConfigError
from ganlab.eval import evaluate
from ganlab.losses import HingeLoss, RaGANLoss
from ganlab.losses.orthogonal import orthogonal_gradient
from ganlab.models import BigGAN, ConditionalGAN
from ganlab.networks import BigGANDiscriminator, BigGANGenerator
from ganlab.sample import sample as ganlab_sample
from ganlab.train import train
from tests.conftest import FAST, compose_config
from tests.test_resume import assert_same_tensors, load
from tests.training import changed, fit, snapshot

# experiment=biggan_digits at the smallest widths attention allows, on 3 batches of 16
TINY = [
    "experiment=biggan_digits",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.generator.latent_dim=16",
    "model.generator.shared_dim=8",
]


def tiny_biggan(**kwargs) -> BigGAN:
    torch.manual_seed(0)
    settings = dict(num_classes=10, n_critic=1, ema_decay=0.9999, ema_warmup=False, ema_start=0)
    settings.update(kwargs)
    g_optimizer = settings.pop("g_optimizer", None)
    loss = settings.pop("loss", None) or HingeLoss()
    adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return BigGAN(
        BigGANGenerator(latent_dim=16, channels=1, num_classes=10, width=8, shared_dim=8),
        BigGANDiscriminator(channels=1, num_classes=10, width=8),
        loss,
        g_optimizer or adam,
        adam,
        latent_dim=16,
        **settings,
    )


def labelled_digits(count: int = 32) -> dict[str, torch.Tensor]:
    return {"image": torch.rand(count, 1, 32, 32) * 2 - 1, "label": torch.arange(count) % 10}


def buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in module.named_buffers()}


# ---------------------------------------------------------------- training dynamics
def test_training_steps_change_g_d_and_ema_with_n_critic_d_steps_per_g_step():
    model = tiny_biggan(n_critic=2)
    before = {name: snapshot(getattr(model, name)) for name in ("generator", "discriminator")}
    ema_before = snapshot(model.generator_ema)
    fit(model, labelled_digits(), steps=3)  # 6 optimizer steps: D, D+G, D, D+G
    assert (model.d_steps, model.g_steps) == (4, 2)
    assert model.images_seen == 4 * 8  # each D step took a batch of its own
    assert changed(before["generator"], model.generator)
    assert changed(before["discriminator"], model.discriminator)
    assert changed(ema_before, model.generator_ema)


def test_ema_copies_g_before_the_start_step_and_lags_after():
    model = tiny_biggan(ema_start=3)
    for g_steps in (1, 2):  # BigGAN-PyTorch: decay 0 while itr < ema_start
        model.g_steps = g_steps
        with torch.no_grad():
            for p in model.generator.parameters():
                p.add_(torch.randn_like(p))
        model.generator(torch.randn(4, 16), torch.arange(4))  # moves the BatchNorm statistics
        model.update_ema()
        assert_same_tensors(model.generator.state_dict(), model.generator_ema.state_dict())
    ema_before = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}
    model.g_steps = 3
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))
    model.generator(torch.randn(4, 16), torch.arange(4))
    model.update_ema()
    raw, ema = model.generator.state_dict(), model.generator_ema.state_dict()
    lagging = [k for k in raw if k.endswith(("original", "running_mean", "running_var"))]
    assert lagging
    for key in lagging:  # weights and BatchNorm statistics: 0.9999 ema + 0.0001 G
        expected = ema_before[key].lerp(raw[key], 1 - 0.9999)
        torch.testing.assert_close(ema[key], expected, rtol=0, atol=1e-7)
        assert not torch.equal(ema[key], raw[key]), key
    for key in [k for k in raw if k.endswith(("_u", "_v", "num_batches_tracked"))]:
        assert torch.equal(ema[key], raw[key]), key  # spectral norm vectors are copied


def test_a_fit_before_the_start_step_leaves_ema_equal_to_g():
    model = tiny_biggan(ema_start=1000)
    fit(model, labelled_digits(), steps=2)
    assert_same_tensors(model.generator.state_dict(), model.generator_ema.state_dict())


class StepRecord:
    """Per training step (by D step count), what G was called with in training (latents,
    labels, whether with a graph) and made, and what D was given, by forward hooks."""

    def __init__(self, model):
        self.model = model
        self.steps: dict[int, dict[str, list]] = {}
        model.generator.register_forward_pre_hook(self._g_inputs)
        model.generator.register_forward_hook(lambda _m, _args, out: self._add("g_out", out))
        model.discriminator.register_forward_pre_hook(lambda _m, args: self._add("d_in", args))

    def _g_inputs(self, _module, args):
        z, labels = args
        self._add("g_in", (z.clone(), labels.clone(), torch.is_grad_enabled()))

    def _add(self, key, value):
        if self.model.generator.training:  # not the shape check before training
            step = self.steps.setdefault(self.model.d_steps, {"g_in": [], "g_out": [], "d_in": []})
            step[key].append(value)


def test_biggan_g_step_draws_fresh_latents_and_random_labels():
    """BigGAN-PyTorch's G step: fresh z and labels drawn over the classes, not the fakes and
    labels of the D step; the G loss judges those fresh fakes under their own labels."""
    model = tiny_biggan(n_critic=2)
    record = StepRecord(model)
    fit(model, labelled_digits(), steps=2)  # a D step, then a D step and a G step
    d_only, with_g = record.steps[0], record.steps[1]
    ((_, _, d_only_graph),) = d_only["g_in"]
    assert not d_only_graph  # a D step without a G step builds no graph through G
    (d_z, d_labels, d_graph), (g_z, g_labels, g_graph) = with_g["g_in"]
    assert not d_graph and g_graph  # the D step's fakes are not reused: made without a graph
    assert not torch.equal(d_z, g_z) and g_z.shape == d_z.shape
    assert not torch.equal(d_labels, g_labels) and g_labels.shape == d_labels.shape
    assert 0 <= g_labels.min() and g_labels.max() < 10
    assert len(g_labels.unique()) > 3  # drawn over the classes, not one label repeated
    judged, judged_labels = with_g["d_in"][-1]  # the G loss's D call
    assert torch.equal(judged, with_g["g_out"][-1]) and torch.equal(judged_labels, g_labels)


def test_other_models_train_g_on_the_d_steps_fakes():
    """The default of the hook: the D step's fakes (made with a graph) and the real labels."""
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    model = ConditionalGAN(
        BigGANGenerator(latent_dim=16, channels=1, num_classes=10, width=8, shared_dim=8),
        BigGANDiscriminator(channels=1, num_classes=10, width=8),
        HingeLoss(),
        adam,
        adam,
        latent_dim=16,
        num_classes=10,
    )
    record = StepRecord(model)
    fit(model, labelled_digits(), steps=2)
    assert sorted(record.steps) == [0, 1]
    for step in record.steps.values():
        ((_, labels, graph),) = step["g_in"]
        assert graph
        judged, judged_labels = step["d_in"][-1]
        assert torch.equal(judged, step["g_out"][0]) and torch.equal(judged_labels, labels)


def test_biggan_g_step_keeps_the_real_labels_for_a_relativistic_loss():
    model = tiny_biggan(loss=RaGANLoss())
    labels = torch.arange(8) % 10
    z = model.noise(8)
    g_z, g_labels = model.g_step_inputs(8, z, labels)
    assert g_labels is labels and not torch.equal(g_z, z)


def test_biggan_g_step_on_the_d_steps_fakes_when_asked():
    model = tiny_biggan(fresh_g_inputs=False)
    assert model.g_step_inputs(8, model.noise(8), torch.arange(8)) is None
    default = tiny_biggan()
    assert default.fresh_g_inputs and default.g_step_inputs(8, None, None) is not None


def test_orthogonal_regularization_adds_its_gradient_to_g_only():
    """One step with SGD lr 1 for G: the weights move by the ortho gradient more than without
    it; D and G's shared embedding are untouched by it."""
    sgd = functools.partial(torch.optim.SGD, lr=1.0)
    runs = {}
    for strength in (0.0, 0.01):
        model = tiny_biggan(ortho_strength=strength, g_optimizer=sgd)
        initial = {k: v.clone() for k, v in model.generator.state_dict().items()}
        pl.seed_everything(0)
        fit(model, labelled_digits(8), steps=1)
        runs[strength] = model
    plain, ortho = runs[0.0], runs[0.01]
    assert_same_tensors(plain.discriminator.state_dict(), ortho.discriminator.state_dict())
    key = "linear.parametrizations.weight.original"
    difference = ortho.generator.state_dict()[key] - plain.generator.state_dict()[key]
    expected = -orthogonal_gradient(initial[key], 0.01)
    assert expected.abs().max() > 1e-4
    torch.testing.assert_close(difference, expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(plain.generator.shared.weight, ortho.generator.shared.weight)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ema_start": -1}, "model.ema_start=-1 must be an integer >= 0"),
        ({"ortho_strength": -1.0}, "strength=-1.0 must be a number >= 0"),
        ({"truncation": 0}, "truncation=0 must be a positive number"),
        ({"ema_warmup": True}, "model.ema_warmup=true ramps the EMA decay up from 0"),
        ({"fresh_g_inputs": "yes"}, "model.fresh_g_inputs='yes' must be true or false"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny_biggan(**kwargs)


# ---------------------------------------------------------------- sampling
def test_truncation_redraws_large_latents_and_lowers_their_norm():
    model = tiny_biggan()
    seen = []
    model.generator_ema.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    plain = model.sample(64, seed=3)
    truncated = model.sample(64, seed=3, truncation=0.5)
    far = model.sample(64, seed=3, truncation=1e6)  # no draw exceeds it: no truncation
    z_plain, z_truncated = seen[0], seen[1]
    assert z_truncated.abs().max() <= 0.5 < z_plain.abs().max()
    assert z_truncated.norm(dim=1).mean() < 0.5 * z_plain.norm(dim=1).mean()
    assert torch.equal(far, plain) and not torch.allclose(truncated, plain)
    assert model._sampling_truncation is None  # the call's threshold is not kept


def test_biggan_digits_trains_and_samples_and_scores_with_truncation_and_standing_stats(
    tmp_path,
):
    run = tmp_path / "run"
    cfg = compose_config([*FAST, *TINY], run)
    model = instantiate(cfg.model)
    assert isinstance(model, BigGAN) and model.conditional and model.n_critic == 1
    train(cfg)
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = load(ckpt)
    assert stored["ganlab"]["progress"] == {"images_seen": 48, "d_steps": 3, "g_steps": 3}
    assert any(key.startswith("generator_ema.") for key in stored["state_dict"])

    def samples(*overrides: str) -> np.ndarray:
        out = tmp_path / f"samples{len(list(tmp_path.glob('samples*')))}.npz"
        options = [f"ckpt_path={ckpt}", "num_samples=8", f"out={out}", "device=cpu", *overrides]
        ganlab_sample(compose_config(options, tmp_path, "sample"))
        return np.load(out)["samples"]

    plain = samples()
    assert not np.allclose(plain, samples("truncation=0.3"))
    assert not np.allclose(plain, samples("standing_stats=2"))
    with pytest.raises(ConfigError, match="truncation=0.0 must be a positive number"):
        samples("truncation=0")
    with pytest.raises(ConfigError, match="standing_stats=0 must be an integer >= 1"):
        samples("standing_stats=0")

    options = [f"ckpt_path={ckpt}", "num_samples=20", "batch_size=10", "metrics=[fid]"]
    options += ["feature_extractor=ganlab-tiny", "num_reference=40", "device=cpu"]
    with_stats = [*options, "standing_stats=2", "truncation=1.5"]
    record = evaluate(compose_config(with_stats, tmp_path, "eval"))
    protocol = record["protocol"]
    assert protocol["batchnorm_at_sampling"].startswith("eval (standing statistics: 2 batches")
    assert protocol["truncation"] == "resampling: every latent entry with |z| > 1.5 redrawn"
    assert protocol["generator"] == "ema" and protocol["selection"] == "last"
    assert json.loads(ckpt.with_suffix(".eval.json").read_text())["protocol"] == protocol
    plain = evaluate(compose_config([*options, "use_ema=false"], tmp_path, "eval"))["protocol"]
    assert plain["batchnorm_at_sampling"] == "eval (running statistics from training)"
    assert plain["truncation"] is None and plain["generator"] == "raw"


def test_evaluation_with_standing_stats_leaves_the_training_statistics_alone(tmp_path):
    from ganlab.data import DigitsDataModule
    from ganlab.metrics.evaluator import SampleQuality

    model = tiny_biggan()
    model.generator_ema.train()
    model.generator_ema(torch.randn(8, 16), torch.arange(8))  # statistics of its own
    before = buffers(model.generator_ema)
    evaluator = SampleQuality(
        metrics=["fid"], num_samples=10, batch_size=5, feature_extractor="ganlab-tiny",
        num_reference=20, standing_stats=2, cache_dir=str(tmp_path),
    )  # fmt: skip
    result = evaluator.evaluate(model, DigitsDataModule(resolution=32, channels=1))
    assert "standing statistics" in result.protocol["batchnorm_at_sampling"]
    assert_same_tensors(before, buffers(model.generator_ema))


def test_eval_refuses_truncation_for_models_without_it(tmp_path):
    from ganlab.metrics.evaluator import check_truncation_support
    from ganlab.models import GANModule

    with pytest.raises(ConfigError, match="truncation=0.7 was given, but .* has no truncation"):
        check_truncation_support(object.__new__(GANModule), 0.7)


# ---------------------------------------------------------------- resume and configs
@pytest.mark.slow
def test_resume_equals_straight_through(tmp_path):
    """n_critic 2 over epochs of 3 batches: a G step falls on both sides of the epoch boundary,
    and the EMA starts averaging after the resume point."""
    common = [*FAST, *TINY, "trainer.limit_train_batches=3"]
    common += ["model.n_critic=2", "model.ema_start=2"]

    def run(epochs: int, name: str, *extra: str):
        overrides = [*common, f"trainer.max_epochs={epochs}", *extra]
        train(compose_config(overrides, tmp_path / name))
        return tmp_path / name / "checkpoints" / "last.ckpt"

    straight = load(run(2, "straight"))
    half = run(1, "resumed")
    assert load(half)["ganlab"]["progress"] == {"images_seen": 48, "d_steps": 3, "g_steps": 1}
    resumed = load(run(2, "resumed", f"ckpt_path={half}"))
    assert straight["ganlab"]["progress"] == resumed["ganlab"]["progress"]
    assert straight["ganlab"]["progress"]["g_steps"] == 3
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")
    ema = {k: v for k, v in straight["state_dict"].items() if k.startswith("generator_ema.")}
    raw = {k.replace("generator_ema.", "generator.", 1): v for k, v in ema.items()}
    assert any(not torch.equal(v, straight["state_dict"][k]) for k, v in raw.items())


@pytest.mark.parametrize(
    "experiment, n_critic, betas, eps, widths",
    [
        ("biggan_cifar10", 5, (0.5, 0.999), 1e-6, (384, 192)),
        ("biggan_author_cifar10", 4, (0.0, 0.999), 1e-8, (256, 256)),
    ],
)
def test_cifar10_experiments_compose_with_their_recipes(
    make_config, experiment, n_critic, betas, eps, widths
):
    cfg = make_config(f"experiment={experiment}")
    assert cfg.loss._target_ == "ganlab.losses.HingeLoss"
    assert (cfg.model.generator.width, cfg.model.discriminator.width) == widths
    cfg.model.generator.width = cfg.model.discriminator.width = 8  # the rest as composed
    model = instantiate(cfg.model)
    assert isinstance(model, BigGAN) and model.n_critic == n_critic
    assert model.ema_decay == 0.9999 and model.ema_start == 1000 and model.ortho_strength == 0
    (g_opt, d_opt), _ = model.configure_optimizers()
    for optimizer in (g_opt, d_opt):
        group = optimizer.param_groups[0]
        assert (group["lr"], tuple(group["betas"]), group["eps"]) == (2e-4, betas, eps)
    assert model.latent_dim == model.generator.latent_dim


# ---------------------------------------------------------------- mechanism
@pytest.mark.mechanism
def test_biggan_draws_the_requested_digit_and_truncation_trades_diversity_for_confidence(
    tmp_path,
):
    """experiment=biggan_digits as a user runs it, then 100 EMA samples of each digit per
    truncation threshold, classified by ganlab-digits (trained on the held-out split)."""
    from ganlab.checkpoint import load_model
    from ganlab.metrics.extractors import DigitsExtractor

    train(compose_config(["experiment=biggan_digits", "logger=csv"], tmp_path / "run"))
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt", "cpu")
    classifier = DigitsExtractor("ganlab-digits", ["logits", "features"])
    wanted = torch.arange(10).repeat_interleave(100)
    figures = {}
    for threshold in (None, 1.0, 0.5, 0.25):
        samples = model.sample(len(wanted), labels=wanted, seed=0, truncation=threshold)
        levels = ((samples + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        with torch.no_grad():
            logits, features = classifier(levels)
        spread = torch.stack([torch.pdist(features[wanted == k]).mean() for k in range(10)])
        figures[threshold] = {
            "agreement": (logits.argmax(dim=1) == wanted).float().mean().item(),
            "confidence": logits.softmax(dim=1).max(dim=1).values.mean().item(),
            "diversity": spread.mean().item(),
        }
    print(json.dumps({str(k): v for k, v in figures.items()}, indent=1))
    assert figures[None]["agreement"] >= 0.6
    assert figures[0.25]["confidence"] > figures[None]["confidence"]
    assert figures[0.25]["diversity"] < figures[0.5]["diversity"] < figures[None]["diversity"]


def test_eval_records_which_checkpoint_callback_selected_the_file(tmp_path):
    from omegaconf import OmegaConf

    from ganlab.eval import selection_rule

    run_config = compose_config(["callbacks=best_fid"], tmp_path)
    checkpoints = tmp_path / "checkpoints"
    assert selection_rule(checkpoints / "last.ckpt", run_config) == "last"
    assert selection_rule(checkpoints / "best.ckpt", run_config) == "best by val/fid (min)"
    other = selection_rule(checkpoints / "epoch3.ckpt", run_config)
    assert other.startswith("the given file epoch3.ckpt")
    assert selection_rule(checkpoints / "last.ckpt", OmegaConf.create({})).startswith("the given")

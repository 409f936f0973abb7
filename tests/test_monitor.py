"""The training monitor: diagnostics logged on real fits, clipping, alarms on runs made to fail
and silence on a healthy one, the views, and the config checks."""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from ganlab.callbacks import TrainingMonitor
from ganlab.errors import ConfigError
from ganlab.losses import BCELoss, WassersteinLoss
from ganlab.models import GANModule
from ganlab.monitor.alarms import Alarms, AlarmSettings
from ganlab.monitor.diagnostics import logit_diagnostics
from ganlab.monitor.views import memorisation, modes_reached, slerp
from ganlab.train import train
from tests.conftest import SMALL_DCGAN
from tests.support import TinyGenerator


class GradientRecorder(pl.Callback):
    """Each player's gradient norm (torch's, over all its parameters) at every optimizer step,
    and G's weights around each batch. Callback hooks run before the module's, so these are the
    gradients before any clipping."""

    def __init__(self) -> None:
        self.norms: dict[str, list[float]] = {"g": [], "d": []}
        self.g_moves: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad.flatten() for g in optimizer.param_groups for p in g["params"]]
        norm = float(torch.linalg.vector_norm(torch.cat(grads)))
        self.norms[pl_module.optimizer_player(optimizer)].append(norm)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._g_before = [p.detach().clone() for p in pl_module.generator.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        after = [p.detach() for p in pl_module.generator.parameters()]
        moved = torch.cat([(a - b).flatten() for a, b in zip(after, self._g_before, strict=True)])
        self.g_moves.append(float(torch.linalg.vector_norm(moved)))


G_CLIP = 1e-3


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    """A real DCGAN fit on digits, every step logged; G trained by plain SGD (lr 1) with its
    gradients clipped, so each of its updates is exactly its clipped gradient."""
    from tests.conftest import FAST, compose_config

    run_dir = tmp_path_factory.mktemp("monitored")
    cfg = compose_config(
        [
            *FAST,
            *SMALL_DCGAN,
            "trainer.accelerator=cpu",
            "callbacks.sample_quality.every_n_epochs=100",
            f"model.g_grad_clip={G_CLIP}",
            "model.g_optimizer._target_=torch.optim.SGD",
            "~model.g_optimizer.betas",
            "model.g_optimizer.lr=1.0",
            "callbacks.monitor.interpolation_rows=3",
            "callbacks.monitor.interpolation_steps=5",
            "callbacks.monitor.memorisation_samples=6",
            "callbacks.monitor.neighbours=2",
        ],
        run_dir / "run",
    )
    recorder = GradientRecorder()
    train(cfg, extra_callbacks=[recorder])
    (path,) = (run_dir / "run" / "csv").glob("version_*/metrics.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return run_dir / "run", recorder, rows


def logged(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def test_gradient_norms_logged_equal_torchs_norm_of_the_grads(monitored_run):
    _, recorder, rows = monitored_run
    for player in ("g", "d"):
        assert len(recorder.norms[player]) == 3  # debug=fast: 3 batches, every one logged
        assert logged(rows, f"monitor/{player}_grad_norm") == pytest.approx(
            recorder.norms[player], rel=1e-5
        )
    for key in ("d_acc_real", "d_acc_fake", "logit_gap", "g_update_size", "ema_distance"):
        values = logged(rows, f"monitor/{key}")
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
    assert all(0 <= v <= 1 for v in logged(rows, "monitor/d_acc_real"))
    assert logged(rows, "alarm/d_wins") == [0.0, 0.0, 0.0]  # within the warm-up


def test_gradient_clipping_bounds_each_update(monitored_run):
    _, recorder, rows = monitored_run
    assert min(recorder.norms["g"]) > 10 * G_CLIP  # the clip was active at every step
    # SGD with lr 1: G's update is its gradient, clipped to norm G_CLIP.
    assert recorder.g_moves == pytest.approx([G_CLIP] * 3, rel=1e-3)
    # the relative update size logged is that move over the weights' norm
    sizes = logged(rows, "monitor/g_update_size")
    norms = logged(rows, "monitor/g_weight_norm")
    assert sizes == pytest.approx([G_CLIP / n for n in norms], rel=1e-3)


def test_views_are_pngs_of_the_expected_grid_size(monitored_run):
    run_dir, _, _ = monitored_run
    side = 32 + 2  # digits at 32x32, make_grid's padding 2
    with Image.open(run_dir / "monitor" / "interpolation.png") as image:
        assert image.size == (5 * side + 2, 3 * side + 2)  # 5 steps x 3 rows
    with Image.open(run_dir / "monitor" / "memorisation.png") as image:
        assert image.size == ((1 + 2) * side + 2, 6 * side + 2)  # sample | 2 neighbours, 6 rows
    summary = json.loads((run_dir / "monitor" / "memorisation.json").read_text())
    assert summary["num_samples"] == 6 and summary["held_out_split"] == "test"
    assert 0 <= summary["share_closer_than_held_out"] <= 1
    assert json.loads((run_dir / "monitor" / "alarms.json").read_text()) == {}


def test_acgan_logs_the_discriminators_accuracy_and_logit_gap(tmp_path):
    from tests.conftest import FAST, compose_config

    acgan = [
        "model.aux_weight=1",
        "model.discriminator._target_=ganlab.networks.ACGANDiscriminator",
    ]
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [*FAST, "model=cgan", *SMALL_DCGAN, *acgan, "trainer.accelerator=cpu"]
        + ["callbacks.sample_quality.every_n_epochs=100", "callbacks.monitor.views=false"],
        run_dir,
    )
    train(cfg)
    (path,) = (run_dir / "csv").glob("version_*/metrics.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    accuracies = logged(rows, "monitor/d_acc_real") + logged(rows, "monitor/d_acc_fake")
    assert len(accuracies) == 6 and all(0 <= v <= 1 for v in accuracies)  # 3 logged steps
    assert len(logged(rows, "train/d_class_acc")) == 3  # AC-GAN's own statistics stay
    # the gap is between the adversarial head's mean outputs on real and on fake
    gaps = [float(r["train/d_real"]) - float(r["train/d_fake"]) for r in rows if r["train/d_real"]]
    assert logged(rows, "monitor/logit_gap") == pytest.approx(gaps, rel=1e-5)


def test_memorisation_counts_copies_of_training_images():
    train_images = torch.rand(50, 1, 8, 8) * 2 - 1
    held_out = torch.rand(50, 1, 8, 8) * 2 - 1
    copies = torch.cat([train_images[:6], torch.rand(4, 1, 8, 8) * 2 - 1])
    summary, indices = memorisation(copies, train_images, held_out, quantile=0.05)
    assert summary["share_closer_than_held_out"] == pytest.approx(0.6)
    assert indices[:6, 0].tolist() == list(range(6))


def test_slerp_keeps_the_ends_and_the_norm_of_unit_latents():
    a, b = torch.nn.functional.normalize(torch.randn(2, 2, 16), dim=2)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (2, 5, 16)
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=2), torch.ones(2, 5), atol=1e-5)


def test_modes_reached_counts_covered_modes_only():
    centers = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    spread = centers.repeat(25, 1) + 0.05 * torch.randn(100, 2)
    assert modes_reached(spread, centers) == (4, 1.0)
    assert modes_reached(centers[:1].repeat(100, 1), centers) == (1, 1.0)
    assert modes_reached(torch.zeros(100, 2), centers) == (0, 0.0)  # a blob between the modes


def test_discriminator_accuracy_follows_the_losss_decision_boundary():
    real, fake = torch.tensor([2.0, -1.0, 3.0, 4.0]), torch.tensor([-2.0, -3.0, 1.0, -1.0])
    stats = logit_diagnostics(BCELoss(), real, fake)
    assert float(stats["monitor/d_acc_real"]) == 0.75
    assert float(stats["monitor/d_acc_fake"]) == 0.75
    assert float(stats["monitor/logit_gap"]) == pytest.approx(3.25)
    # A critic's output has no sign: its boundary is the midpoint of the batch means, so
    # shifting every output changes nothing (BCE's boundary stays at 0).
    shifted = logit_diagnostics(WassersteinLoss(), real + 10, fake + 10)
    assert float(shifted["monitor/d_acc_real"]) == 0.75
    assert float(shifted["monitor/d_acc_fake"]) == 0.75
    assert float(logit_diagnostics(BCELoss(), real + 10, fake + 10)["monitor/d_acc_fake"]) == 0


def alarm_run(make_config, *overrides: str, batches: int = 150):
    cfg = make_config(
        "experiment=toy_ring",
        "trainer.accelerator=cpu",
        "data.batch_size=64",
        f"trainer.limit_train_batches={batches}",
        "trainer.log_every_n_steps=5",
        "callbacks.sample_quality.every_n_epochs=100",
        "callbacks.sample_quality.num_samples=100",
        "callbacks.monitor.warmup_steps=50",
        "callbacks.monitor.warmup_fraction=0",
        "callbacks.monitor.window=5",
        "callbacks.monitor.collapse_every_n_logs=2",
        *overrides,
    )
    train(cfg)
    return json.loads((Path(cfg.paths.output_dir) / "monitor" / "alarms.json").read_text())


@pytest.mark.slow
def test_discriminator_wins_alarm_fires_with_advice(make_config, caplog):
    # D learns 1000 times faster than G: it separates G's points from the ring and stays ahead.
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        fired = alarm_run(make_config, "model.g_optimizer.lr=1e-5", "model.d_optimizer.lr=1e-2")
    assert "d_wins" in fired
    assert "lower D's learning rate (TTUR" in fired["d_wins"]["message"]
    warnings = [r.getMessage() for r in caplog.records if "alarm d_wins" in r.getMessage()]
    assert len(warnings) == 1  # written once


@pytest.mark.slow
def test_mode_collapse_alarm_fires_on_a_collapsing_toy_run(make_config):
    # Both players at lr 1e-2: the generator reaches up to 3 of the 8 modes, then piles its
    # points onto 1 from about step 300 on.
    fired = alarm_run(
        make_config, "model.g_optimizer.lr=1e-2", "model.d_optimizer.lr=1e-2", batches=400
    )
    assert "mode_collapse" in fired
    assert "modes" in fired["mode_collapse"]["message"]


@pytest.mark.slow
def test_divergence_alarm_fires_on_an_unconstrained_critic(make_config):
    # A Wasserstein critic without clipping, GP or SN, both players at lr 1e-2: its weights
    # and losses grow without bound.
    lrs = ["model.g_optimizer.lr=1e-2", "model.d_optimizer.lr=1e-2"]
    fired = alarm_run(make_config, "loss=wasserstein", *lrs)
    assert "divergence" in fired and "grew" in fired["divergence"]["message"]


@pytest.mark.slow
def test_alarms_stay_silent_on_a_healthy_toy_run(make_config):
    assert alarm_run(make_config) == {}


def test_vanishing_and_divergence_alarms_on_their_trends():
    alarms = Alarms(AlarmSettings(warmup_steps=0, window=3))
    messages = []
    for step, (grad, weight) in enumerate(
        [(1.0, 10.0), (1.2, 10.0), (0.8, 10.0), (1e-3, 11.0), (1e-3, 15.0), (1e-4, 23.0)]
    ):
        values = {"monitor/g_grad_norm": grad, "monitor/g_weight_norm": weight}
        messages += alarms.observe(step, values)
    assert set(alarms.fired) == {"vanishing_g_grad", "divergence"}
    assert any("monitor/g_weight_norm grew 2.09 times" in m for m in messages)
    assert alarms.state["vanishing_g_grad"] == 1
    # the state follows the condition; the message is not repeated
    assert alarms.observe(6, {"monitor/g_grad_norm": 1.0, "monitor/g_weight_norm": 5.0}) == []
    assert alarms.state == {
        "d_wins": 0,
        "vanishing_g_grad": 0,
        "mode_collapse": 0,
        "divergence": 0,
    }


# The logged values of two runs (D steps 200 to 290, every 10th), in which D was right on
# (almost) every real and fake sample throughout: unrolled_digits (15 epochs), whose samples
# gained variety meanwhile, and benchmarks/monitor.py's d_wins_ring (G's learning rate 1e-5).
UNROLLED_DIGITS_UPDATES = [2.03, 2.16, 2.24, 2.49, 2.52, 2.41, 2.64, 2.69, 4.65, 3.96]  # 1e-3
D_WINS_RING_UPDATES = [0.753, 0.794, 0.862, 1.06, 1.22, 1.12, 1.38, 1.72, 1.52, 1.58]  # 1e-4


def test_vanishing_gradient_is_judged_against_the_start_of_the_run():
    # G's gradient dies within the warm-up (as with vanishing_ring's dying ReLU units): the
    # reference is the run's first window, not the first window after the warm-up.
    alarms = Alarms(AlarmSettings(warmup_steps=4, window=2))
    for step, norm in enumerate([1.5, 1.8, 0.0, 0.0, 0.0, 0.0]):
        alarms.observe(step, {"monitor/g_grad_norm": norm})
    assert "early median (1.65)" in alarms.fired["vanishing_g_grad"]["message"]
    dead = Alarms(AlarmSettings(warmup_steps=0, window=2))  # zero from the first step on
    for step in range(4):
        dead.observe(step, {"monitor/g_grad_norm": 0.0})
    assert "vanishing_g_grad" in dead.fired


@pytest.mark.parametrize(
    ("updates", "fires"),
    [
        ([u * 1e-3 for u in UNROLLED_DIGITS_UPDATES], False),
        ([u * 1e-4 for u in D_WINS_RING_UPDATES], True),
    ],
)
def test_d_wins_needs_a_generator_that_stopped_moving(updates, fires):
    alarms = Alarms(AlarmSettings(warmup_steps=0, window=len(updates)))
    accuracies = {"monitor/d_acc_real": 1.0, "monitor/d_acc_fake": 1.0}
    messages = []
    for step, update in enumerate(updates):
        messages += alarms.observe(step, {**accuracies, "monitor/g_update_size": update})
    assert ("d_wins" in alarms.fired) == fires
    if fires:
        assert "relative update size stayed under 0.001 (at most 0.00017)" in messages[0]
    # judged on D's accuracy alone (d_wins_g_update=None), both fire
    alone = Alarms(AlarmSettings(warmup_steps=0, window=len(updates), d_wins_g_update=None))
    for step, update in enumerate(updates):
        alone.observe(step, {**accuracies, "monitor/g_update_size": update})
    assert "d_wins" in alone.fired


def test_d_wins_without_update_sizes_is_judged_on_accuracy():
    # Logging steps without a G step (n_critic > 1) log no update size: they have no say.
    alarms = Alarms(AlarmSettings(warmup_steps=0, window=3))
    for step in range(3):
        alarms.observe(step, {"monitor/d_acc_real": 0.99, "monitor/d_acc_fake": 1.0})
    assert "the generator gets little signal" in alarms.fired["d_wins"]["message"]


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("window", 1, "window=1 must be an integer >= 2"),
        ("d_accuracy", 1.5, "d_accuracy=1.5 must be a number >= 0.5, at most 1"),
        ("d_wins_g_update", -1e-3, "d_wins_g_update=-0.001 must be a number >= 0, or null"),
        ("warmup_steps", -1, "warmup_steps=-1 must be an integer >= 0"),
        ("divergence_growth", 0.5, "divergence_growth=0.5 must be a number >= 1"),
        ("interpolation_steps", 1, "interpolation_steps=1 must be an integer >= 2"),
        ("memorisation_quantile", 2, "memorisation_quantile=2 must be a number >= 0, at most 1"),
        ("warmup_fraction", -0.1, "warmup_fraction=-0.1 must be a number >= 0, at most 1"),
    ],
)
def test_bad_windows_and_thresholds_name_the_accepted_range(tmp_path, option, value, accepted):
    with pytest.raises(ConfigError, match=f"callbacks.monitor.{accepted}"):
        TrainingMonitor(dirpath=str(tmp_path), **{option: value})


@pytest.mark.parametrize("value", [0, -1.0, "big"])
def test_bad_gradient_clip_is_a_config_error(value):
    with pytest.raises(ConfigError, match=rf"model.d_grad_clip={value!r} must be a number > 0"):
        GANModule(
            TinyGenerator(4, 1, 4),
            torch.nn.Linear(16, 1),
            BCELoss(),
            torch.optim.Adam,
            torch.optim.Adam,
            latent_dim=4,
            d_grad_clip=value,
        )


def test_bad_window_from_the_command_line_is_one_line(tmp_path):
    from tests.conftest import run_command

    result = run_command("ganlab-train", "callbacks.monitor.window=0", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "callbacks.monitor.window=0 must be an integer >= 2" in result.stderr


def test_monitor_benchmark_rejects_an_unknown_run(tmp_path):
    from tests.conftest import REPO_ROOT

    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "monitor.py"), "--runs=nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--runs: 'nope' is not one of" in result.stderr and "d_wins_ring" in result.stderr


def test_collapse_is_a_fall_not_a_slow_start():
    settings = AlarmSettings(warmup_steps=0, collapse_window=2)
    rising, falling = Alarms(settings), Alarms(settings)
    for step, value in enumerate([0.1, 0.2, 0.3, 0.5, 0.9]):  # little variety at first, gaining
        rising.observe_diversity(step, value, reference=4.0)
    assert rising.fired == {}
    for step, value in enumerate([2.0, 3.0, 0.5, 0.4]):  # diverse, then a fall
        falling.observe_diversity(step, value, reference=4.0)
    assert (
        "fell to 0.4, under 0.25 times the real data's (4)"
        in falling.fired["mode_collapse"]["message"]
    )

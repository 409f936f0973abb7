"""A broken run stops, names the step it broke at, and never writes a checkpoint it broke in."""

import logging

import pytest
import torch

from ganlab.errors import NonFiniteLossError
from ganlab.losses import BCELoss
from ganlab.models import GANModule
from ganlab.models.health import NonFiniteWatch, first_non_finite
from ganlab.train import train
from tests.conftest import FAST, REPO_ROOT, SMALL_DCGAN, run_command
from tests.support import ExplodingLoss
from tests.test_resume import photo_config
from tests.test_train import logged, read_metrics

EXPLODING = ["loss._target_=tests.support.ExplodingLoss"]


class PoisonedStatsGAN(GANModule):
    """Finite losses throughout, but after D step `poison_after` the discriminator's BatchNorm
    running variance holds an infinity (training-mode BatchNorm never reads it)."""

    def __init__(self, *args, poison_after: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.poison_after = poison_after

    def after_d_step(self) -> None:
        if self.d_steps + 1 == self.poison_after:
            norms = [m for m in self.discriminator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            norms[0].running_var[0] = float("inf")


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_watch_remembers_the_first_non_finite_step_and_value():
    watch = NonFiniteWatch()
    for step, value in enumerate([1.0, 2.0, float("inf"), float("nan")]):
        watch.observe("train/d_loss", torch.tensor(value), step)
        watch.observe("train/g_loss", torch.tensor(float("nan") if step == 3 else 0.0), step)
    assert watch.first_failure() == ("train/d_loss", 2, float("inf"))
    assert NonFiniteWatch().first_failure() is None


def test_first_non_finite_finds_nested_optimizer_moments():
    state = {"state_dict": {"w": torch.ones(2)}, "optimizer_states": [{"state": {0: {}}}]}
    assert first_non_finite(state) is None
    state["optimizer_states"][0]["state"][0]["exp_avg_sq"] = torch.tensor([1.0, float("nan")])
    assert first_non_finite(state) == "optimizer_states.0.state.0.exp_avg_sq"


def test_nan_seen_between_checks_names_its_step_and_keeps_the_last_good_checkpoint(
    make_config, tmp_path
):
    # 3 batches an epoch, health read every 4 steps: the NaN of the 5th D step (epoch 1,
    # batch 1) is found by the check before epoch 1's checkpoint, two steps after it happened.
    cfg = make_config(
        *SMALL_DCGAN,
        *EXPLODING,
        "+loss.explode_after=4",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=4",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "train/d_loss became nan at D step 5 (epoch 1, batch 1)" in message
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"{last} holds the state after epoch 0 (3 D steps)" in message
    ckpt = load(last)
    assert ckpt["ganlab"]["progress"]["d_steps"] == 3
    assert first_non_finite({k: ckpt[k] for k in ("state_dict", "optimizer_states")}) is None


def test_nan_at_the_first_step_says_no_checkpoint_exists(make_config, tmp_path):
    cfg = make_config(*SMALL_DCGAN, *EXPLODING, "+loss.explode_after=0")
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written by this run"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_non_finite_buffers_are_never_saved(make_config, tmp_path):
    cfg = make_config(
        *SMALL_DCGAN,
        "model._target_=tests.test_health.PoisonedStatsGAN",
        "+model.poison_after=5",
        "trainer.max_epochs=3",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "state_dict.discriminator." in message and "running_var is not finite" in message
    assert "at epoch 1 (6 D steps). This checkpoint was not written." in message
    ckpt = load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0
    assert first_non_finite({k: ckpt[k] for k in ("state_dict", "optimizer_states")}) is None


def test_exploding_weights_are_reported_in_the_log(make_config, caplog):
    cfg = make_config(*SMALL_DCGAN, "model.d_optimizer.lr=1e6", "model.weight_growth_warning=100")
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "initial norm" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per network, not at every check
    assert warnings[0].startswith("the discriminator's weights grew to")
    assert "model.weight_growth_warning=100" in warnings[0]


def test_healthy_run_logs_statistics_at_the_logging_interval_only(make_config, tmp_path, caplog):
    cfg = make_config(*SMALL_DCGAN, "trainer.limit_train_batches=6", "trainer.log_every_n_steps=3")
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert len(logged(rows, "train/d_loss")) == 2  # steps 3 and 6 of 6
    assert not [r for r in caplog.records if "initial norm" in r.getMessage()]


class OneProcessExplodingLoss(ExplodingLoss):
    """NaN on the process of global rank 1 only, from its `explode_after`-th D loss on."""

    def d_loss(self, real_logits, fake_logits):
        if torch.distributed.get_rank() == 1:
            return super().d_loss(real_logits, fake_logits)
        return BCELoss.d_loss(self, real_logits, fake_logits)


@pytest.mark.slow
def test_a_nan_on_one_process_stops_every_process(tmp_path):
    result = run_command(
        "ganlab-train",
        *FAST,
        *SMALL_DCGAN,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=3",
        "loss._target_=tests.test_health.OneProcessExplodingLoss",
        "+loss.explode_after=4",
        cwd=tmp_path,
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode != 0  # and it returned at all: no process hangs in a collective
    assert "train/d_loss became nan at D step 5 (epoch 1, batch 1)" in result.stderr
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    ckpt = load(last)
    assert ckpt["epoch"] == 0
    assert first_non_finite({k: ckpt[k] for k in ("state_dict", "optimizer_states")}) is None


@pytest.mark.parametrize(
    "family",
    [
        "watermark",
        "cyclegan",
        pytest.param("sr4", marks=pytest.mark.slow),
        pytest.param("inpaint", marks=pytest.mark.slow),
    ],
)
def test_a_translation_run_stops_at_its_first_nan_and_keeps_the_last_good_checkpoint(
    tmp_path, family
):
    # 2 batches an epoch; the BCE D loss is NaN from its 3rd call on: D step 3 (epoch 1, batch
    # 0), or for CycleGAN, whose D step computes one loss per domain, its 5th call (D["a"]).
    explode_after = 4 if family == "cyclegan" else 2
    name = "train/d_a" if family == "cyclegan" else "train/d_loss"
    cfg = photo_config(
        family,
        "loss=bce",
        *EXPLODING,
        f"+loss.explode_after={explode_after}",
        "trainer.limit_train_batches=2",
        "trainer.max_epochs=3",
        output_dir=tmp_path / "run",
        data_dir=tmp_path / "data",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    message = str(caught.value)
    assert f"{name} became nan at D step 3 (epoch 1, batch 0)" in message
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"{last} holds the state after epoch 0 (2 D steps)" in message
    ckpt = load(last)
    assert ckpt["ganlab"]["progress"]["d_steps"] == 2
    assert first_non_finite({k: ckpt[k] for k in ("state_dict", "optimizer_states")}) is None

"""Checkpoints are data: loading one never runs code, and a killed write never loses the run."""

import logging
import multiprocessing
import os
import pathlib
import random
import signal
import time

import pytest
import torch
from hydra.utils import instantiate

from ganlab.checkpoint import checkpoint_to_resume, read_checkpoint
from ganlab.checkpoint_io import (
    TEMP_SUFFIX,
    AtomicCheckpointIO,
    atomic_save,
    previous_checkpoint,
)
from ganlab.errors import CheckpointError
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command

REFUSED = "holds something other than tensors and plain values"


class TouchesMarker:
    """What a hostile checkpoint carries: unpickling it would create `marker`."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def hostile_checkpoint(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """Shaped like a ganlab checkpoint, with the payload where RNG states go."""
    config = {"model": {"_target_": "ganlab.models.GANModule"}, "seed": 0}
    rng_states = {"torch": torch.get_rng_state(), "python": TouchesMarker(marker)}
    torch.save({"state_dict": {}, "ganlab": {"config": config, "rng_states": rng_states}}, path)
    return path


WEIGHT = torch.arange(1 << 20, dtype=torch.float32)  # 4 MB: a write takes a while


def small_checkpoint(step: int) -> dict:
    """Built from WEIGHT without computing: a forked writer must not start torch's threads."""
    return {"state_dict": {"weight": WEIGHT}, "ganlab": {"config": {"step": step}}}


def temp_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.glob(f"*{TEMP_SUFFIX}"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two epochs of a small DCGAN with a G schedule and best.ckpt: every kind of state that
    ganlab-train puts in a checkpoint (loops, callbacks, optimizers, schedulers, RNG, data)."""
    run_dir = tmp_path_factory.mktemp("trained")
    overrides = [
        *SMALL_DCGAN,
        "callbacks=best_fid",
        "trainer.max_epochs=2",
        "+model.g_scheduler._target_=torch.optim.lr_scheduler.ExponentialLR",
        "+model.g_scheduler._partial_=true",
        "+model.g_scheduler.gamma=0.5",
    ]
    train(compose_config([*FAST, *overrides], run_dir))
    return run_dir / "checkpoints"


def test_everything_ganlab_train_writes_loads_with_weights_only(trained_run):
    for name in ("last.ckpt", "last.prev.ckpt", "best.ckpt"):
        ckpt = torch.load(trained_run / name, map_location="cpu", weights_only=True)
        assert {"state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks"} <= set(
            ckpt
        )
        assert ckpt["ganlab"]["config"]["model"]["g_scheduler"]["gamma"] == 0.5
    assert torch.load(trained_run / "last.prev.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(trained_run / "last.ckpt", weights_only=True)["epoch"] == 1
    assert temp_files(trained_run) == []


@pytest.mark.parametrize(
    "command",
    [
        ["ganlab-sample", "num_samples=4", "out=s.npz"],
        ["ganlab-eval", "num_samples=10"],
        ["ganlab-train", "debug=fast"],
    ],
    ids=["sample", "eval", "train"],
)
def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, command):
    marker = tmp_path / "code_ran"
    ckpt = hostile_checkpoint(tmp_path / "last.ckpt", marker)
    result = run_command(*command, f"ckpt_path={ckpt}", cwd=tmp_path)
    assert not marker.exists()
    assert result.returncode == 2, result.stderr
    assert f"ckpt_path='{ckpt}' {REFUSED} (it refers to getattr)" in result.stderr
    assert "ganlab checkpoints never contain code" in result.stderr
    assert "Traceback" not in result.stderr


def test_lightning_loads_through_the_safe_plugin_too(tmp_path):
    # What trainer.fit(ckpt_path=...) calls to read the file.
    marker = tmp_path / "code_ran"
    ckpt = hostile_checkpoint(tmp_path / "last.ckpt", marker)
    with pytest.raises(CheckpointError, match=REFUSED):
        AtomicCheckpointIO().load_checkpoint(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("trainer_option", ["default", "cpu", "ddp", "ddp_multinode"])
def test_every_trainer_writes_through_the_atomic_plugin(tmp_path, trainer_option):
    cfg = compose_config([f"trainer={trainer_option}", "trainer.accelerator=cpu"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_save_keeps_the_previous_checkpoint_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "last.ckpt"
    (tmp_path / f".last.ckpt.killed{TEMP_SUFFIX}").write_bytes(b"half a write")
    for step in range(3):
        AtomicCheckpointIO().save_checkpoint(small_checkpoint(step), target)
    assert read_checkpoint(target)["ganlab"]["config"] == {"step": 2}
    assert read_checkpoint(previous_checkpoint(target))["ganlab"]["config"] == {"step": 1}
    assert temp_files(tmp_path) == []
    AtomicCheckpointIO().remove_checkpoint(target)
    assert list(tmp_path.iterdir()) == []


def save_forever(target: pathlib.Path, step: int) -> None:
    while True:
        atomic_save(small_checkpoint(step), target)
        step += 1


def test_writers_killed_at_random_points_always_leave_a_checkpoint_to_resume(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_save(small_checkpoint(0), target)
    delays = random.Random(0)
    fork = multiprocessing.get_context("fork")  # a copy of this process: no import per writer
    last_step, kills_mid_write = 0, 0
    for _ in range(15):
        writer = fork.Process(target=save_forever, args=(target, last_step + 1), daemon=True)
        writer.start()
        time.sleep(delays.uniform(0.05, 0.4))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        kills_mid_write += bool(temp_files(tmp_path))
        assert len(temp_files(tmp_path)) <= 2  # this writer's own, never earlier ones

        path, ckpt = checkpoint_to_resume(target)
        step = ckpt["ganlab"]["config"]["step"]
        assert torch.equal(ckpt["state_dict"]["weight"], WEIGHT)
        assert path == target  # the newest file is always complete: no fallback needed
        # A kill between keeping the previous file and the rename leaves two equal ones.
        assert read_checkpoint(previous_checkpoint(target))["ganlab"]["config"]["step"] <= step
        assert step >= last_step
        last_step = step
    assert last_step > 15  # the writers made progress between kills
    assert kills_mid_write > 0  # and the kills did land inside writes
    atomic_save(small_checkpoint(-1), target)
    assert temp_files(tmp_path) == []


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    target = tmp_path / "last.ckpt"
    for step in range(2):
        atomic_save(small_checkpoint(step), target)
    target.write_bytes(target.read_bytes()[:1000])  # as a write that was not atomic leaves it

    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(target)
    previous = previous_checkpoint(target)
    assert str(caught.value) == (
        f"ckpt_path='{target}' is not a readable checkpoint (PytorchStreamReader failed reading "
        "zip archive: failed finding central directory); a write may have been interrupted: "
        f"the run's previous checkpoint is {previous}, give ckpt_path={previous}"
    )

    with caplog.at_level(logging.WARNING, logger="ganlab"):
        path, ckpt = checkpoint_to_resume(target)
    assert path == previous and ckpt["ganlab"]["config"] == {"step": 0}
    assert f"{target} cannot be read" in caplog.text
    assert f"resuming from the previous checkpoint {previous} instead" in caplog.text


def test_an_empty_checkpoint_without_a_previous_one_says_so(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"is not a readable checkpoint \(the file is empty\)"
    ):
        checkpoint_to_resume(target)

"""The logger options write real files: TensorBoard event files and an offline W&B run."""

import logging
import time

import pytest

from ganlab.train import train
from tests.conftest import SMALL_DCGAN
from tests.support import read_wandb_run


def test_tensorboard_logger_writes_scalars_and_sample_grids(make_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(make_config(*SMALL_DCGAN, "logger=tensorboard"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert "train/d_loss" in events.Tags()["scalars"]
    assert len(events.Scalars("train/d_loss")) == 3
    assert "samples" in events.Tags()["images"]


@pytest.fixture
def no_wandb_account(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("WANDB_SILENT", "true")


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_wandb_without_an_account_logs_offline_and_says_so(
    make_config, tmp_path, caplog, no_wandb_account
):
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        train(make_config(*SMALL_DCGAN, "logger=wandb", "trainer.max_epochs=2"))
    assert "W&B logs offline: no W&B account" in caplog.text and "wandb sync" in caplog.text
    (run_file,) = offline_runs(tmp_path / "run")
    # W&B's service process writes the run file on its own schedule: wait until it is complete.
    deadline = time.monotonic() + 60
    run = read_wandb_run(run_file)
    while (
        not {"model.generator.base_width"} <= set(run["config"])
        or "val/protocol" not in run["summary"]
    ):
        assert time.monotonic() < deadline, "the offline run file was never completed"
        time.sleep(0.5)
        run = read_wandb_run(run_file)
    # The resolved config, flattened into filterable keys
    assert run["config"]["model.generator.base_width"] == 8
    assert run["config"]["data._target_"] == "ganlab.data.DigitsDataModule"
    # A scalar series, a sample grid per epoch, and the scores with their protocol
    d_losses = [row["train/d_loss"] for row in run["history"] if "train/d_loss" in row]
    assert len(d_losses) == 6
    grids = [row for row in run["history"] if row.get("samples/_type") == "images/separated"]
    assert len(grids) == 2
    for grid in grids:
        (name,) = grid["samples/filenames"]
        assert (run_file.parent / "files" / name).is_file()
    assert isinstance(run["summary"]["val/fid"], float)
    assert run["summary"]["val/protocol"]["feature_extractor"] == "ganlab-tiny"
    assert run["summary"]["val/protocol"]["num_generated"] == 100


def test_resumed_run_continues_the_same_wandb_run(make_config, tmp_path, no_wandb_account):
    first = make_config(*SMALL_DCGAN, "logger=wandb", output_dir=tmp_path / "first")
    train(first)
    (first_file,) = offline_runs(tmp_path / "first")
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(
        make_config(
            *SMALL_DCGAN,
            "logger=wandb",
            "trainer.max_epochs=2",
            f"ckpt_path={ckpt}",
            output_dir=tmp_path / "second",
        )
    )
    (second_file,) = offline_runs(tmp_path / "second")
    assert second_file.name == first_file.name  # run-<id>.wandb: the same run id


def test_no_logger_still_writes_checkpoints_and_grids(make_config, tmp_path):
    train(make_config(*SMALL_DCGAN, "logger=none"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "samples" / "epoch_0000.png").is_file()
    assert not (tmp_path / "run" / "csv").exists()

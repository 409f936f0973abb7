"""The logger options write real files: TensorBoard event files and an offline W&B run."""

from ganlab.train import train
from tests.conftest import SMALL_DCGAN


def test_tensorboard_logger_writes_scalars_and_sample_grids(make_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(make_config(*SMALL_DCGAN, "logger=tensorboard"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert "train/d_loss" in events.Tags()["scalars"]
    assert len(events.Scalars("train/d_loss")) == 3
    assert "samples" in events.Tags()["images"]


def test_wandb_logger_runs_offline_without_an_account(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train(make_config(*SMALL_DCGAN, "logger=wandb"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the offline run holds no data file to sync"
    images = list(runs[0].rglob("media/images/samples_*.png"))
    assert images, "the sample grid was not logged"


def test_no_logger_still_writes_checkpoints_and_grids(make_config, tmp_path):
    train(make_config(*SMALL_DCGAN, "logger=none"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "samples" / "epoch_0000.png").is_file()
    assert not (tmp_path / "run" / "csv").exists()

"""The console scripts as a user runs them: ganlab-train, ganlab-sample, and their errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.checkpoint import load_model
from ganlab.errors import CheckpointError, ConfigError, GanlabError
from ganlab.sample import sample
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A one-epoch DCGAN on digits, shared by the sampling tests."""
    run_dir = tmp_path_factory.mktemp("trained")
    train(compose_config([*FAST, *SMALL_DCGAN], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run_command(
        "ganlab-train", "model=gan_mlp", "data=mnist", "--cfg", "job", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "_target_: ganlab.networks.MLPGenerator" in result.stdout
    assert "_target_: ganlab.data.TorchvisionDataModule" in result.stdout
    assert not (tmp_path / "runs").exists()  # printing the config starts no run


def test_unknown_option_names_it_and_the_accepted_ones(tmp_path):
    result = run_command("ganlab-train", "model=nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "ganlab-train: error: model=nope is not an option of model" in result.stderr
    for option in ("dcgan", "gan_mlp", "toy_mlp"):
        assert option in result.stderr


def test_model_data_mismatch_is_one_clear_line(tmp_path):
    result = run_command("ganlab-train", "model=dcgan", "data=toy_ring", cwd=tmp_path)
    assert result.returncode == 2
    assert "ganlab-train: error:" in result.stderr
    assert "data.channels" in result.stderr and "model=dcgan and data=toy_ring" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_tells_where_the_run_directory_is_and_sample_exports_it(tmp_path):
    result = run_command("ganlab-train", *FAST, *SMALL_DCGAN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dirs = list((tmp_path / "runs" / "train" / "dcgan_digits").iterdir())
    assert len(run_dirs) == 1
    assert f"run directory: {run_dirs[0]}" in result.stdout + result.stderr
    ckpt = run_dirs[0] / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run_dirs[0] / "samples" / "epoch_0000.png").is_file()

    result = run_command(
        "ganlab-sample", f"ckpt_path={ckpt}", "num_samples=5", "out=s.npz", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s.npz") as arrays:
        assert set(arrays.files) == {"samples"}
        assert arrays["samples"].shape == (5, 1, 32, 32)
        assert arrays["samples"].dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "s.npz"]  # nothing else


def test_sample_npz_is_reproducible_by_seed(trained_checkpoint, tmp_path):
    def draw(seed, name):
        cfg = compose_config(
            [
                f"ckpt_path={trained_checkpoint}",
                "num_samples=6",
                f"out={tmp_path / name}",
                f"seed={seed}",
            ],
            tmp_path,
            "sample",
        )
        sample(cfg)
        return np.load(tmp_path / name)["samples"]

    first, again, other = draw(3, "a.npz"), draw(3, "b.npz"), draw(4, "c.npz")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= -1 and first.max() <= 1


def test_sample_png_grid(trained_checkpoint, tmp_path):
    cfg = compose_config(
        [f"ckpt_path={trained_checkpoint}", "num_samples=16", f"out={tmp_path / 'grid.png'}"],
        tmp_path,
        "sample",
    )
    sample(cfg)
    with Image.open(tmp_path / "grid.png") as image:
        # 4x4 tiles of 32 px with make_grid's 2 px padding
        assert image.size == (4 * 34 + 2, 4 * 34 + 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["ckpt_path=missing.ckpt"], "ckpt_path='missing.ckpt' does not exist"),
        (["out=samples.jpg"], "out='samples.jpg' must end in one of ('.npz', '.png')"),
        (["num_samples=0"], "num_samples=0 must be a positive integer"),
        (["labels=[3,3,7]"], "labels=[3, 3, 7] were given, but the checkpoint's model"),
        (["device=tpu:9"], "device='tpu:9' is not a device"),
    ],
)
def test_sample_errors_name_the_bad_value(trained_checkpoint, tmp_path, overrides, message):
    args = [f"ckpt_path={trained_checkpoint}", f"out={tmp_path / 's.npz'}", *overrides]
    with pytest.raises(GanlabError) as caught:
        sample(compose_config(args, tmp_path, "sample"))
    assert message in str(caught.value)
    assert not (tmp_path / "s.npz").exists()


def test_a_foreign_checkpoint_is_refused(tmp_path):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="is not a ganlab checkpoint"):
        load_model(foreign)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_model(garbage)


def test_generator_not_matching_the_data_is_caught_before_training(make_config):
    cfg = make_config(*SMALL_DCGAN, "model.generator.resolution=64")
    with pytest.raises(
        ConfigError,
        match=r"shape \(1, 64, 64\), but data 'digits' has shape "
        r"\(1, 32, 32\)",
    ):
        train(cfg)


def test_model_reading_another_data_key_is_refused(make_config):
    cfg = make_config("model=toy_mlp", "data=toy_ring", "model.data_key=image")
    with pytest.raises(ConfigError, match="data 'toy_ring' yields batches of 'point'"):
        train(cfg)

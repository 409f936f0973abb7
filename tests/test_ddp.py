"""Real DDP: two CPU processes over gloo, launched the way Lightning launches GPU jobs."""

import json

import pytest
import torch

from tests.conftest import FAST, SMALL_DCGAN, run_command


def test_ddp_trains_with_two_cpu_processes(tmp_path):
    result = run_command(
        "ganlab-train",
        *FAST,
        *SMALL_DCGAN,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=bf16-mixed",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in output
    run_dirs = list((tmp_path / "runs" / "train" / "dcgan_digits").iterdir())
    assert len(run_dirs) == 1, "both processes must write into one run directory"
    ckpt = torch.load(run_dirs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    # 3 batches of 16 on each of 2 processes; each process took 3 D and 3 G steps.
    assert ckpt["ganlab"]["progress"] == {"images_seen": 3 * 16 * 2, "d_steps": 3, "g_steps": 3}
    weights = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in weights)


def test_scores_are_the_same_for_one_and_two_processes(tmp_path):
    """Same generator weights (learning rate 0, no BatchNorm), same latents by index: the
    gathered features, and so every score, do not depend on the number of processes."""
    frozen = [
        "model=gan_mlp",
        "data.resolution=16",
        "model.ema_decay=null",
        "model.g_optimizer.lr=0",
        "model.d_optimizer.lr=0",
    ]
    scores = {}
    for devices in (1, 2):
        cwd = tmp_path / f"ws{devices}"
        cwd.mkdir()
        result = run_command(
            "ganlab-train",
            *FAST,
            *frozen,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            f"trainer.devices={devices}",
            cwd=cwd,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (metrics,) = (cwd / "runs").rglob("metrics.json")
        (record,) = json.loads(metrics.read_text())
        assert record["protocol"]["world_size"] == devices
        scores[devices] = record["scores"]
    assert set(scores[1]) == {
        "fid",
        "is_mean",
        "is_std",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
    }
    for key, value in scores[1].items():
        assert scores[2][key] == pytest.approx(value, rel=1e-6, abs=1e-12), key

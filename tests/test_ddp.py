"""Real DDP: two CPU processes over gloo, launched the way Lightning launches GPU jobs."""

import json
import logging
import random

import numpy as np
import pytest
import torch

from ganlab.checkpoint import load_model
from ganlab.models import CycleGAN
from ganlab.models.restoration import WatermarkRemovalGAN
from ganlab.utils.rng import (
    collect_rng_states,
    restore_process_rng_states,
    seed_process_streams,
)
from tests.conftest import FAST, REPO_ROOT, SMALL_DCGAN, run_command
from tests.test_resume import PHOTO_SETS, TRANSLATION_FAMILIES, assert_same_tensors


@pytest.mark.slow
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
    ckpt = torch.load(run_dirs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    # 3 batches of 16 on each of 2 processes; each process took 3 D and 3 G steps.
    assert ckpt["ganlab"]["progress"] == {"images_seen": 3 * 16 * 2, "d_steps": 3, "g_steps": 3}
    weights = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in weights)


@pytest.mark.slow
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


# ---------------------------------------------------------------- per-process random streams
def draws() -> list:
    """One draw from each generator a training step uses."""
    return [torch.rand(4).tolist(), np.random.rand(4).tolist(), random.random()]


def test_each_rank_gets_its_own_stream_and_the_same_rank_the_same(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    by_rank = {}
    for rank in (0, 1, 0):
        seed_process_streams(rank)
        by_rank.setdefault(rank, []).append(draws())
    assert by_rank[0][0] == by_rank[0][1]
    for generator in range(3):  # torch, numpy, python: each differs between the ranks
        assert by_rank[0][0][generator] != by_rank[1][0][generator]


def test_states_from_another_number_of_processes_warn_and_rederive(monkeypatch, caplog):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    seed_process_streams(rank=0, resumed_after=6)
    expected = draws()
    saved = []
    for rank in (0, 1):
        seed_process_streams(rank)
        saved.append(collect_rng_states())
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        restore_process_rng_states(saved, rank=0, world_size=1, resumed_after=6)
    assert draws() == expected
    assert (
        "the checkpoint holds the random number states of 2 processes, but this run has 1; "
        "each process starts a new stream from (seed, rank, 6 D steps done)" in caplog.text
    )
    # The same number of processes: each gets its own saved state back, silently.
    caplog.clear()
    for states, rank, world_size in ((saved, 1, 2), (saved[0], 0, 1)):  # a dict: one process's
        restore_process_rng_states(states, rank, world_size, resumed_after=6)
        after_restore = draws()
        seed_process_streams(rank)  # the state that `saved` holds for this rank
        assert after_restore == draws()
    assert caplog.text == ""


def train_two_processes(cwd, record_dir, *overrides):
    """`ganlab-train` on 2 gloo processes, each recording its initial weights and latents."""
    cwd.mkdir()
    record_dir.mkdir(exist_ok=True)
    result = run_command(
        "ganlab-train",
        *FAST,
        *SMALL_DCGAN,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "model._target_=tests.support.LatentRecordingGAN",
        f"+model.record_dir={record_dir}",
        *overrides,
        cwd=cwd,
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (ckpt,) = (cwd / "runs").rglob("last.ckpt")
    records = [torch.load(record_dir / f"rank{rank}.pt") for rank in (0, 1)]
    return ckpt, records


@pytest.fixture(scope="module")
def straight_two_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    return train_two_processes(root / "run", root / "records", "trainer.max_epochs=2")


@pytest.mark.slow
def test_ranks_start_from_the_same_weights_and_draw_different_latents(straight_two_epochs):
    ckpt, (rank0, rank1) = straight_two_epochs
    for name, weight in rank0["initial_generator"].items():
        assert torch.equal(weight, rank1["initial_generator"][name]), name
    assert len(rank0["step_latents"]) == len(rank1["step_latents"]) == 2 * 3
    pairs = zip(rank0["step_latents"], rank1["step_latents"], strict=True)
    for step, (z0, z1) in enumerate(pairs):
        assert z0.shape == z1.shape == (16, 100)
        assert not torch.equal(z0, z1), f"both ranks drew the same latents at step {step}"
    # Every rank's state is in the checkpoint, readable without running pickled code.
    rng_states = torch.load(ckpt, weights_only=True)["ganlab"]["rng_states"]
    assert len(rng_states) == 2
    assert not torch.equal(rng_states[0]["torch"], rng_states[1]["torch"])


@pytest.mark.slow
def test_two_process_resume_equals_straight_through(straight_two_epochs, tmp_path):
    straight_ckpt, straight_records = straight_two_epochs
    # One record directory: a resumed run keeps its settings; its second part overwrites it.
    records = tmp_path / "records"
    half_ckpt, _ = train_two_processes(tmp_path / "half", records, "trainer.max_epochs=1")
    resumed_ckpt, resumed_records = train_two_processes(
        tmp_path / "resumed", records, "trainer.max_epochs=2", f"ckpt_path={half_ckpt}"
    )
    # Each rank continued its own stream: the second epoch drew the same latents on each rank.
    for straight, resumed in zip(straight_records, resumed_records, strict=True):
        second_epoch = zip(straight["step_latents"][3:], resumed["step_latents"], strict=True)
        for z_straight, z_resumed in second_epoch:
            assert torch.equal(z_straight, z_resumed)
    straight = torch.load(straight_ckpt, weights_only=True)
    resumed = torch.load(resumed_ckpt, weights_only=True)
    assert straight["global_step"] == resumed["global_step"] == 2 * 3 * 2
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(
        straight["optimizer_states"], resumed["optimizer_states"], "optimizer_states"
    )
    assert straight["ganlab"]["progress"] == resumed["ganlab"]["progress"]


# ---------------------------------------------------------------- image-to-image families
class BatchRecording:
    """Writes, when training ends, every training batch this process was given to
    `record_dir/rank<R>.pt`."""

    def __init__(self, *args, record_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_dir = record_dir
        self.batches: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        self.batches.append({k: v.detach().cpu().clone() for k, v in batch.items()})
        return super().training_step(batch, batch_idx)

    def on_train_end(self) -> None:
        super().on_train_end()
        torch.save(self.batches, f"{self.record_dir}/rank{self.global_rank}.pt")


class BatchRecordingWatermarkGAN(BatchRecording, WatermarkRemovalGAN):
    pass


class BatchRecordingCycleGAN(BatchRecording, CycleGAN):
    pass


def flip_invariant_keys(images: torch.Tensor) -> set[bytes]:
    """One key per image that its horizontal flip shares (training flips at random)."""
    return {min(x.numpy().tobytes(), x.flip(-1).numpy().tobytes()) for x in images}


@pytest.mark.parametrize(
    "family, recorder, first_key",
    [
        ("watermark", BatchRecordingWatermarkGAN, "source"),
        ("cyclegan", BatchRecordingCycleGAN, "a"),
    ],
    ids=["watermark", "cyclegan"],
)
@pytest.mark.slow
def test_translation_ddp_splits_the_data_scores_on_rank_zero_and_saves_a_loadable_model(
    tmp_path, family, recorder, first_key
):
    records = tmp_path / "records"
    records.mkdir()
    result = run_command(
        "ganlab-train",
        *FAST,
        *TRANSLATION_FAMILIES[family],
        *PHOTO_SETS,
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"model._target_=tests.test_ddp.{recorder.__name__}",
        f"+model.record_dir={records}",
        cwd=tmp_path,
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr

    # 16 training items, batches of 4: each process got 2 batches, none of the other's items.
    rank0, rank1 = (torch.load(records / f"rank{rank}.pt") for rank in (0, 1))
    assert len(rank0) == len(rank1) == 2
    for batch0, batch1 in zip(rank0, rank1, strict=True):
        assert not torch.equal(batch0[first_key], batch1[first_key])
    if family == "watermark":  # whole images, only flipped: the two halves of the set
        seen = [flip_invariant_keys(torch.cat([b["target"] for b in r])) for r in (rank0, rank1)]
        assert len(seen[0]) == len(seen[1]) == 8 and not seen[0] & seen[1]

    # Scored once on rank 0, the numbers shared: one record, every process in its protocol.
    (metrics,) = (tmp_path / "runs").rglob("metrics.json")
    (record,) = json.loads(metrics.read_text())
    assert record["protocol"]["world_size"] == 2
    assert record["protocol"]["count"] == 8  # the whole test split
    assert {"psnr", "ssim"} <= set(record["scores"])
    (csv_file,) = (tmp_path / "runs").rglob("metrics.csv")
    assert "val/psnr" in csv_file.read_text().partition("\n")[0].split(",")

    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    model, _ = load_model(last)
    assert isinstance(model, recorder)
    assert torch.load(last, weights_only=True)["ganlab"]["progress"]["images_seen"] == 2 * 4 * 2
    images = torch.zeros(2, 3, 64, 64) if family == "watermark" else torch.zeros(2, 3, 32, 32)
    translated = model.translate(images)
    assert translated.shape == images.shape and torch.isfinite(translated).all()

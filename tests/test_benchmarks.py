"""The benchmark scripts run end to end at toy sizes: the commands behind docs/ numbers work."""

import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, REPO_ROOT, SMALL_DCGAN, run_command


def run_script(name: str, *args: str, tmp_path) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / name), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_modes_benchmark_tables_each_recipe_and_layout(tmp_path):
    out = tmp_path / "modes.json"
    stdout = run_script(
        "modes.py",
        "--recipes=gan,best",
        "--seeds=0,1",
        f"--run-dir={tmp_path / 'runs'}",
        f"--out={out}",
        "trainer.max_epochs=1",
        "data.num_samples=1024",
        tmp_path=tmp_path,
    )
    rows = json.loads(out.read_text())
    assert {(r["recipe"], r["layout"], r["seed"]) for r in rows} == {
        (recipe, layout, seed)
        for recipe in ("gan", "best")
        for layout in ("ring", "grid")
        for seed in (0, 1)
    }
    for row in rows:
        assert 0 <= row["modes"] <= (8 if row["layout"] == "ring" else 25)
        assert 0 <= row["hq_frac"] <= 1
    assert "| grid | best | r1_ring | 2 |" in stdout
    assert "PacGAN4 (published)" in stdout


def refusal(name: str, *args: str) -> str:
    """The stderr of a benchmark script that refused its arguments (exit status 2)."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    return result.stderr


def test_modes_benchmark_rejects_an_unknown_recipe(tmp_path):
    stderr = refusal("modes.py", "--recipes=veegan")
    assert "--recipes: 'veegan' is not one of gan, wgan_gp, unrolled, best" in stderr


@pytest.mark.slow
def test_families_benchmark_tables_fid_and_is(tmp_path):
    out = tmp_path / "families.json"
    stdout = run_script(
        "families_digits.py",
        "--experiments=dcgan_digits,lsgan_digits",
        f"--run-dir={tmp_path / 'runs'}",
        f"--out={out}",
        *FAST,
        *SMALL_DCGAN,
        tmp_path=tmp_path,
    )
    rows = json.loads(out.read_text())
    assert [r["experiment"] for r in rows] == ["dcgan_digits", "lsgan_digits"]
    assert all(r["scores"]["fid"] > 0 and r["epoch"] == 1 for r in rows)
    assert rows[0]["extractor"] == "ganlab-tiny"
    assert "| lsgan_digits |" in stdout


@pytest.mark.slow
def test_img2img_benchmark_scores_each_model_beside_its_classical_baselines(tmp_path):
    out = tmp_path / "img2img.json"
    stdout = run_script(
        "img2img.py",
        "--tasks=sr4,inpaint",
        f"--run-dir={tmp_path / 'runs'}",
        f"--out={out}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "data.num_train=16",
        "data.num_test=4",
        "model.generator.base_width=8",
        tmp_path=tmp_path,
    )
    rows = json.loads(out.read_text())
    methods = {(row["task"], row["method"]) for row in rows}
    assert methods == {
        ("sr4", "ganlab GAN"),
        ("sr4", "L1 stage (PSNR-oriented)"),
        ("sr4", "interpolation 0.5"),
        ("sr4", "bicubic"),
        ("sr4", "lanczos"),
        ("inpaint", "ganlab GAN"),
        ("inpaint", "L1 only (ablation)"),
        ("inpaint", "biharmonic"),
    }
    for row in rows:  # every row scored on the same 4 held-out items, with one protocol
        assert row["protocol"]["count"] == 4
        assert row["protocol"]["split"] == "test"
        assert row["sharpness"] > 0
    sr_rows = [row for row in rows if row["task"] == "sr4"]
    assert all(row["protocol"]["crop_border"] == 4 for row in sr_rows)
    assert all("psnr_y" in row["scores"] for row in sr_rows)
    assert all("l1_hole" in row["scores"] for row in rows if row["task"] == "inpaint")
    assert "| inpaint | biharmonic |" in stdout


def test_img2img_benchmark_rejects_an_unknown_task(tmp_path):
    stderr = refusal("img2img.py", "--tasks=colorize")
    assert "--tasks: 'colorize' is not one of watermark, sr4, inpaint, denoise, cyclegan" in stderr


def test_img2img_benchmark_rejects_a_thread_count_below_1():
    stderr = refusal("img2img.py", "--threads=0")
    assert "--threads: 0 is not a thread count; accepted: 1 or more" in stderr


def test_watermark_diagnosis_splits_the_loss_between_photo_and_watermark(tmp_path):
    trained = run_command(
        "ganlab-train",
        "experiment=watermark_photos",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "logger=csv",
        "data.num_train=8",
        "data.num_test=6",
        "data.batch_size=4",
        "model.generator.base_width=4",
        "model.discriminator.base_width=4",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stdout = run_script("watermark_diagnosis.py", f"--ckpt={ckpt}", "--count=6", tmp_path=tmp_path)
    assert "test split (6 crops):" in stdout
    identity = float(stdout.split("identity ")[1].split()[0])
    # clean pixels wherever the head points can only lower the error; an exact unblend of the
    # true mask with one fitted colour and opacity lowers it far
    ceilings = [
        line for line in stdout.splitlines() if line.startswith(("  true mask", "  model's mask"))
    ]
    values = [float(line.split()[-1]) for line in ceilings]
    assert len(values) == 3 and values[1] >= identity and values[2] > identity + 3
    crossings = [line for line in stdout.splitlines() if "watermarks: model" in line]
    assert len(crossings) == 4 and all("IoU" in line for line in crossings)

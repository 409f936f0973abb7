"""How a run ends: the final scores on the console; no run directory from a run that never
took a step."""

import json

import pytest

from ganlab.run_end import StepCounter, removed_unless_started
from tests.conftest import FAST, REPO_ROOT, SMALL_DCGAN, run_command


def only_run_dir(cwd, name):
    (run_dir,) = (cwd / "runs" / "train" / name).iterdir()
    return run_dir


def test_training_ends_with_the_final_scores_and_where_they_are(tmp_path):
    result = run_command("ganlab-train", *FAST, *SMALL_DCGAN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path, "dcgan_digits")
    scores = json.loads((run_dir / "metrics.json").read_text())[-1]["scores"]
    output = result.stdout + result.stderr
    (line,) = [line for line in output.splitlines() if "final scores: " in line]
    listed = dict(item.rsplit(" ", 1) for item in line.split("final scores: ")[1].split(", "))
    assert set(listed) == {f"val/{key}" for key in scores}
    for key, value in scores.items():
        assert float(listed[f"val/{key}"]) == pytest.approx(value, rel=1e-3)
    assert f"every evaluation with its protocol: {run_dir / 'metrics.json'}" in output


def test_a_run_that_fails_before_its_first_step_leaves_no_directory(tmp_path):
    # a model that does not fit the data, found while composing
    result = run_command("ganlab-train", "model=dcgan", "data=toy_ring", *FAST, cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "runs" / "train" / "dcgan_toy_ring").exists()
    # a generator whose resolution differs from the data's, found when fit starts
    result = run_command(
        "ganlab-train", *FAST, *SMALL_DCGAN, "model.generator.resolution=64", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the generator makes samples of shape (1, 64, 64)" in result.stderr
    assert "removed the run directory" in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()  # runs/train/dcgan_digits, all emptied


def test_a_run_that_fails_after_training_steps_keeps_its_directory(tmp_path):
    result = run_command(
        "ganlab-train",
        *FAST,
        *SMALL_DCGAN,
        "loss._target_=tests.support.ExplodingLoss",
        "+loss.explode_after=2",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "train/d_loss became nan" in result.stderr
    log = (only_run_dir(tmp_path, "dcgan_digits") / "train.log").read_text()
    assert "train/d_loss became nan" in log  # the reason stays beside the run's other files


def start_of_run(run_dir, *extra):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("[]\n")
    for name in ("train.log", "config.yaml", *extra):
        (run_dir / name).write_text("")


@pytest.mark.parametrize("batches", [0, 1])
def test_only_an_unstarted_run_is_removed(tmp_path, batches):
    run_dir = tmp_path / "dcgan_digits" / "2026-01-01_00-00-00_000000"
    start_of_run(run_dir)
    steps = StepCounter()
    steps.batches = batches
    with pytest.raises(KeyboardInterrupt), removed_unless_started(run_dir, steps):
        raise KeyboardInterrupt
    assert run_dir.exists() == bool(batches)
    assert (tmp_path / "dcgan_digits").exists() == bool(batches)  # the emptied parent goes too


def test_a_directory_holding_anything_else_is_never_removed(tmp_path):
    start_of_run(tmp_path, "notes.txt")  # e.g. hydra.run.dir=. in a project folder
    with pytest.raises(ValueError), removed_unless_started(tmp_path, StepCounter()):
        raise ValueError("bad value")
    assert (tmp_path / "notes.txt").is_file() and (tmp_path / "train.log").is_file()

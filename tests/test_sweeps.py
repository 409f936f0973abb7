"""Many runs from one command line: Optuna search, grids, the summary table, submitit."""

import json

import pytest
import yaml

from ganlab.summary import main as summary_main
from tests.conftest import FAST, SMALL_DCGAN, run_command


def sweep_dir(cwd):
    (path,) = (cwd / "runs" / "train" / "multirun").iterdir()
    return path


def final_fid(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())[-1]["scores"]["fid"]


@pytest.mark.slow
def test_optuna_search_runs_each_trial_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the sweep extra is absent")
    result = run_command(
        "ganlab-train",
        "-m",
        "hparams_search=optuna_fid",
        "hydra.sweeper.n_trials=3",
        *FAST,
        *SMALL_DCGAN,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    trials = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name.split("_")[0] for p in trials] == ["0", "1", "2"]
    for trial in trials:
        assert (trial / "checkpoints" / "last.ckpt").is_file()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # the sweeper sees the logged value (float32), metrics.json keeps float64
    assert best["best_value"] == pytest.approx(min(final_fid(t) for t in trials), rel=1e-6)
    assert set(best["best_params"]) == {
        "model.g_optimizer.lr",
        "model.d_optimizer.lr",
        "model.g_optimizer.betas",
        "model.n_critic",
    }


@pytest.mark.slow
def test_grid_sweep_and_its_summary_table(tmp_path, capsys):
    result = run_command(
        "ganlab-train", "-m", "seed=0,1", "loss=bce,hinge", *FAST, *SMALL_DCGAN, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    runs = [p for p in sweep.iterdir() if (p / "metrics.json").is_file()]
    assert len(runs) == 4
    assert summary_main([str(sweep), "--metrics", "fid,is_mean"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| configuration | runs | seeds | fid | is_mean |"
    rows = {line.split(" | ")[0].strip("| "): line for line in table[2:]}
    assert set(rows) == {"loss=bce", "loss=hinge"}
    bce = [final_fid(p) for p in runs if "loss=bce" in (p / ".hydra/overrides.yaml").read_text()]
    mean = sum(bce) / 2
    assert f"| loss=bce | 2 | 0, 1 | {mean:.4g} ± " in rows["loss=bce"]


def test_summary_of_a_missing_directory_is_an_error(tmp_path, capsys):
    assert summary_main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_slurm_launcher_config_composes_from_the_trainer(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the sweep extra is absent")
    result = run_command(
        "ganlab-train",
        "hydra/launcher=slurm",
        "trainer=ddp_multinode",
        "trainer.num_nodes=4",
        "hydra.launcher.partition=gpu",
        "--cfg",
        "hydra",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["nodes"] == "${trainer.num_nodes}"
    assert launcher["tasks_per_node"] == "${trainer.devices}"
    assert launcher["partition"] == "gpu"


@pytest.mark.slow
def test_local_submitit_launcher_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the sweep extra is absent")
    result = run_command(
        "ganlab-train", "-m", "hydra/launcher=local", "seed=0,1", *FAST, *SMALL_DCGAN, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    for job in ("0_dcgan_digits", "1_dcgan_digits"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # two separate processes

"""Every mistake on a command line: one `ganlab-<cmd>: error:` paragraph, exit status 2, no
traceback and no run directory left behind; and what the commands print besides."""

import importlib.util
import json
import logging
import shutil

import pytest
import torch

from ganlab.checks import check_command_line
from ganlab.errors import ConfigError
from ganlab.utils.progress import progress
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command

TINY_EVAL = ["feature_extractor=ganlab-tiny", "num_samples=32", "num_reference=100"]


def assert_one_error(result, command: str, *fragments: str) -> str:
    """The command failed with exit 2 and one error paragraph holding every fragment."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def assert_no_run_directory(cwd) -> None:
    assert not [path for path in (cwd / "runs").rglob("config.yaml")]
    assert not [path for path in (cwd / "runs").rglob("*.log")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch DCGAN trained by the command, as a user would: (its output, last.ckpt)."""
    cwd = tmp_path_factory.mktemp("trained")
    result = run_command("ganlab-train", *FAST, *SMALL_DCGAN, cwd=cwd)
    assert result.returncode == 0, result.stderr
    (ckpt,) = (cwd / "runs").rglob("last.ckpt")
    return result.stdout + result.stderr, ckpt


def test_misspelt_groups_options_and_keys_say_what_was_meant(tmp_path):
    cases = [
        (["modle=dcgan"], "there is no config group or key 'modle' (did you mean model=dcgan?)"),
        (["model=dcgann"], "model=dcgann is not an option of model (did you mean model=dcgan?)"),
        (["model.n_critc=5"], "model has no key 'n_critc' (did you mean model.n_critic=5?)"),
        (["-m", "seed=0,1", "model=dcgan,dcgann"], "model=dcgann is not an option of model"),
        (["seed=0,1"], "seed=0,1: a comma-separated value is a sweep; add -m (--multirun)"),
    ]
    for args, message in cases:
        result = run_command("ganlab-train", *args, cwd=tmp_path)
        assert_one_error(result, "ganlab-train", message)
        assert "HYDRA_FULL_ERROR" not in result.stderr and "+modle" not in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before Hydra made a run directory


def test_wrong_types_missing_gpus_and_unimportable_targets_are_refused(tmp_path):
    cases = [
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' must be an integer or null"),
        (
            ["model._target_=mypkg.smoothing.LabelSmoothingGAN"],
            "cannot be imported (No module named 'mypkg')",
            "pip install -e .",
            "PYTHONPATH",
        ),
        (
            ["model.generator._target_=ganlab.networks.DCGANGeneratr"],
            "module 'ganlab.networks' has no 'DCGANGeneratr' "
            "(did you mean ganlab.networks.DCGANGenerator?)",
        ),
    ]
    if not torch.cuda.is_available():
        cases.append((["trainer=gpu"], "trainer.accelerator='gpu' asks for a GPU", "trainer=cpu"))
    for args, *messages in cases:
        result = run_command("ganlab-train", *FAST, *args, cwd=tmp_path)
        assert_one_error(result, "ganlab-train", *messages)
    assert_no_run_directory(tmp_path)


def test_an_error_while_building_is_said_once_with_where_it_happened(tmp_path):
    missing = tmp_path / "facades"
    result = run_command(
        "ganlab-train", *FAST, "model=pix2pix", "data=aligned", f"data.root={missing}", cwd=tmp_path
    )
    reason = f"data.root={missing} does not exist"
    assert_one_error(result, "ganlab-train", reason, "(while building data: ganlab.data.")
    assert result.stderr.count(reason) == 1
    assert_no_run_directory(tmp_path)


def test_a_debug_run_is_quiet_and_says_its_scores_are_not_comparable(trained):
    output, _ = trained
    assert "litlogger" not in output and "LeafSpec" not in output
    assert "are not comparable with other runs' scores" in output


def test_resuming_a_checkpoint_of_another_model_names_both(trained, tmp_path):
    _, ckpt = trained
    result = run_command("ganlab-train", *FAST, "model=gan_mlp", f"ckpt_path={ckpt}", cwd=tmp_path)
    error = assert_one_error(result, "ganlab-train", "model.generator._target_")
    assert "DCGANGenerator" in error and "MLPGenerator" in error
    assert "size mismatch" not in result.stderr
    assert_no_run_directory(tmp_path)


def test_sample_and_eval_refuse_bad_values(trained, tmp_path):
    _, ckpt = trained
    result = run_command("ganlab-sample", f"ckpt_path={ckpt}", "num_samples=abc", cwd=tmp_path)
    assert_one_error(result, "ganlab-sample", "num_samples='abc' must be a positive integer")
    result = run_command("ganlab-sample", f"ckpt_path={ckpt}", "truncation=0.7", cwd=tmp_path)
    assert_one_error(result, "ganlab-sample", "truncation=0.7 was given, but the checkpoint's")
    result = run_command("ganlab-eval", f"ckpt_path={ckpt}", "num_samples=abc", cwd=tmp_path)
    assert_one_error(result, "ganlab-eval", "num_samples='abc' must be an integer or null")
    result = run_command("ganlab-eval", f"ckpt_path={ckpt}", "data.resolution=64", cwd=tmp_path)
    assert_one_error(
        result, "ganlab-eval", "data.resolution=64:", "shape (1, 32, 32)", "shape (1, 64, 64)"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no file, no run directory


def test_eval_prints_its_scores_before_writing_them_and_logs_to_stderr(trained, tmp_path):
    """metrics=fid is one metric, data.* overrides need no `+`, a directory where the JSON goes
    costs nothing of the scores, and the log (a rebuilt cache too) is on stderr."""
    _, trained_ckpt = trained
    ckpt = tmp_path / "last.ckpt"
    shutil.copy(trained_ckpt, ckpt)
    (tmp_path / "last.eval.json").mkdir()
    cache = {"GANLAB_CACHE_DIR": str(tmp_path / "cache")}
    args = [f"ckpt_path={ckpt}", *TINY_EVAL, "metrics=fid", "data.batch_size=50"]
    result = run_command("ganlab-eval", *args, cwd=tmp_path, env=cache)
    record = json.loads(result.stdout)
    assert set(record["scores"]) == {"fid"}
    assert "[ganlab][INFO] - scoring" in result.stderr
    assert "extracting the features of 100 real samples (digits, train split)" in result.stderr
    assert_one_error(
        result, "ganlab-eval", "the scores are printed above", "last.eval.json (Is a directory)"
    )

    (tmp_path / "last.eval.json").rmdir()
    (statistics,) = (tmp_path / "cache" / "reference").glob("*.pt")
    statistics.write_bytes(b"corrupt")
    result = run_command("ganlab-eval", *args, cwd=tmp_path, env=cache)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((tmp_path / "last.eval.json").read_text())
    assert "are unreadable" in result.stderr and "recomputing them" in result.stderr
    assert f"wrote the scores to {tmp_path / 'last.eval.json'}" in result.stderr
    assert not [path for path in tmp_path.iterdir() if path.suffix == ".log"]


def test_long_loops_log_their_progress_outside_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="ganlab"):
        assert list(progress(range(3), "reference features", every_s=0)) == [0, 1, 2]
    assert "reference features: 3/3 batches" in caplog.text


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


def test_sweeps_missing_values_and_eval_data_overrides_are_checked_in_advance():
    sweep = ["-m", "model=dcgan,gan_mlp", "seed=0,1,2"]
    if has_module("hydra_plugins.hydra_optuna_sweeper"):  # the sweep extra; absent: no Optuna
        sweep.append("hparams_search=optuna_fid")
    assert check_command_line("train", sweep) == sweep
    assert check_command_line("train", ["--help", "modle=x"]) == ["--help", "modle=x"]
    with pytest.raises(ConfigError, match=r"model has no key 'n_critc'"):
        check_command_line("train", ["-m", "seed=0,1", "model=dcgan,gan_mlp", "model.n_critc=1"])
    with pytest.raises(ConfigError, match="did you mean model.n_critic=5"):
        check_command_line("train", ["--cfg", "job", "model.n_critc=5"])
    # a {...} value merges into the node: a key it lacks names the way to replace the node
    replace = "model.generator={_target_:x.Net,width:32}"
    with pytest.raises(ConfigError) as refused:
        check_command_line("train", ["model=dcgan", replace, "seed=1"])
    assert f"{replace}: model.generator has no key 'width' (its keys are " in str(refused.value)
    assert f"delete it first: '~model.generator' '+{replace[:15]}" in str(refused.value)
    with pytest.raises(ConfigError, match=r"ckpt_path must be given \(ckpt_path=\.\.\."):
        check_command_line("sample", [])
    with pytest.raises(ConfigError, match="data.path must be given"):
        check_command_line("train", ["data=image_folder"])
    args = ["ckpt_path=x.ckpt", "data.root=/datasets", "num_samples=8"]
    freed = check_command_line("eval", args, free_keys=("data",))
    assert freed == ["ckpt_path=x.ckpt", "++data.root=/datasets", "num_samples=8"]


def test_debug_fast_keeps_the_accelerator_and_scores_a_small_sample(tmp_path):
    cfg = compose_config(["debug=fast"], tmp_path)
    assert cfg.trainer.accelerator == "auto"
    assert cfg.callbacks.sample_quality.num_samples <= 500
    assert cfg.callbacks.sample_quality.num_reference <= 1000
    assert compose_config(["trainer=gpu", "debug=fast"], tmp_path).trainer.accelerator == "gpu"


def test_group_null_turns_a_group_off_as_in_a_defaults_list(tmp_path):
    argv = ["regularizers=null", "augment=null", "experiment=null", "seed=null"]
    assert check_command_line("train", argv) == [
        "regularizers=none",  # groups with a `none` option take it
        "augment=none",
        "~experiment",  # others leave the defaults list
        "seed=null",  # a plain key keeps its null
    ]
    overrides = check_command_line("train", ["model=wgan_gp", "regularizers=null"])
    cfg = compose_config([*FAST, *overrides], tmp_path)
    assert not cfg.model.d_regularizers

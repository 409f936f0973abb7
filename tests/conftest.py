"""Compose the real config tree, shrunk to seconds on a CPU, with its own output directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from ganlab.cli import compose_run

REPO_ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.interrupts"]  # Ctrl-C and SIGTERM stop the whole session

# Small networks and few batches: every test run finishes in seconds.
FAST = [
    "debug=fast",
    "logger=csv",
    "data.batch_size=16",
    # Scores from a tiny fixed-weight extractor on few samples: the real code path, in seconds.
    "callbacks.sample_quality.feature_extractor=ganlab-tiny",
    "callbacks.sample_quality.num_samples=100",
    "callbacks.sample_quality.num_reference=300",
    "callbacks.sample_quality.batch_size=50",
]
SMALL_DCGAN = ["model.generator.base_width=8", "model.discriminator.base_width=8"]


def _threads_per_test_process() -> int:
    """At most 2 torch threads; under pytest-xdist (`-n N`) the cores shared among the workers,
    so that N workers do not each start as many threads as the machine has cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


torch.set_num_threads(_threads_per_test_process())
if "PYTEST_XDIST_WORKER" in os.environ:  # the commands the tests start share the cores too
    os.environ["OMP_NUM_THREADS"] = str(_threads_per_test_process())


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Reference statistics and extractor weights go to a cache of the test session's own,
    never to the user's ~/.cache/ganlab."""
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("GANLAB_CACHE_DIR")
    os.environ["GANLAB_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("GANLAB_CACHE_DIR", None)
    else:
        os.environ["GANLAB_CACHE_DIR"] = previous


def compose_config(
    overrides: Sequence[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """The config `ganlab-train overrides...` would run, writing into `output_dir` and reading
    datasets from `output_dir/data`."""
    cfg = compose_run(overrides, output_dir, config_name)
    if "paths" in cfg:
        cfg.paths.data_dir = str(output_dir / "data")
    return cfg


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config([*FAST, *overrides], output_dir or tmp_path / "run")

    return make


def command_line(script: str) -> list[str]:
    """How to start a ganlab console script (`ganlab-train`) of the Python running the tests: the
    script beside the interpreter (a virtual environment), else on PATH when it belongs to this
    interpreter's installation, else `python -m ganlab.train`."""
    beside = Path(sys.executable).with_name(script)
    if beside.is_file():
        return [str(beside)]
    on_path = shutil.which(script)
    if on_path:
        shebang = Path(on_path).read_text(errors="ignore").partition("\n")[0].removeprefix("#!")
        if Path(shebang.strip()).resolve() == Path(sys.executable).resolve():
            return [on_path]
    return [sys.executable, "-m", "ganlab." + script.removeprefix("ganlab-")]


def run_command(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """Run a ganlab console script as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "GANLAB_RUNS_DIR": str(cwd / "runs"), **(env or {})}
    return subprocess.run(
        [*command_line(args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )

"""The wheel carries the configs, and the lowest-version constraints follow pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """ganlab's wheel, built from a copy of the sources (the build writes beside them)."""
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO_ROOT / name, src)
    for name in ("ganlab", "conf"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = dist.glob("ganlab-*.whl")
    return built


def test_the_wheel_carries_every_config_file(wheel):
    configs = {
        p.relative_to(REPO_ROOT / "conf").as_posix() for p in (REPO_ROOT / "conf").rglob("*")
    }
    configs = {name for name in configs if name.endswith(".yaml")}
    shipped = {
        name.removeprefix("ganlab/conf/")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("ganlab/conf/")
    }
    assert "hydra/launcher/slurm.yaml" in shipped  # nested groups too
    assert shipped == configs


def test_an_unpacked_wheel_composes_from_its_own_configs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import ganlab.cli as cli; "
        "cfg = cli.compose_run(['model=gan_mlp'], 'out'); "
        "print(cli.CONFIG_DIR); print(cfg.model._target_)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},  # ahead of the source checkout
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config_dir, target = result.stdout.split()[-2:]
    assert Path(config_dir) == site / "ganlab" / "conf"
    assert target.startswith("ganlab.models.")


def test_lowest_constraints_match_pyproject():
    pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / ".ci" / "lowest_constraints.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pins = (REPO_ROOT / ".ci" / "lowest-constraints.txt").read_text().splitlines()
    assert "torch-fidelity==0.4" in pins and "pytorch-lightning==2.6" in pins

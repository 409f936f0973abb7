"""Ctrl-C and SIGTERM during a Lightning fit stop the whole pytest session (tests/interrupts.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# A fit that runs until it is interrupted, announcing its first step, then a test that must not run.
SESSION = """
from pathlib import Path

import pytorch_lightning as pl
import torch

HERE = Path(__file__).parent


class Endless(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        (HERE / "fit_started").touch()
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_fit_until_interrupted():
    data = torch.utils.data.TensorDataset(torch.zeros(64, 2))
    trainer = pl.Trainer(
        max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=HERE,
    )
    trainer.fit(Endless(), torch.utils.data.DataLoader(data, batch_size=1))


def test_after_the_interrupt():
    (HERE / "next_test_ran").touch()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_fit_stops_the_session(tmp_path: Path, signum: signal.Signals):
    (tmp_path / "test_session.py").write_text(SESSION)
    session = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.interrupts",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_session.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "fit_started").exists():
            assert session.poll() is None, (
                f"the session ended before the fit:\n{session.stdout.read()}"
            )
            assert time.monotonic() < deadline, "the fit never started"
            time.sleep(0.2)
        session.send_signal(signum)
        output, _ = session.communicate(timeout=60)
    finally:
        session.kill()
    assert session.returncode == pytest.ExitCode.INTERRUPTED, output
    assert f"{signum.name} received: the test session stops" in output
    assert not (tmp_path / "next_test_ran").exists(), output

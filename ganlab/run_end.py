"""How a training run ends: its final scores on the console, or, when it failed before its first
step, no run directory left behind."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from ganlab.callbacks import SampleQualityCallback

log = logging.getLogger("ganlab")

# What a run writes before its first step: Hydra's config copies and log, the resolved config,
# and the loggers' folders. A directory holding anything else is never removed.
WRITTEN_AT_START = frozenset({".hydra", "config.yaml", "csv", "tensorboard", "wandb"})


class StepCounter(pl.Callback):
    """Counts the training batches this process finished (a resumed run counts from zero)."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


@contextlib.contextmanager
def removed_unless_started(output_dir: Path, steps: StepCounter) -> Iterator[None]:
    """A run that stops (error or interrupt) before `steps` counted a batch leaves no run
    directory: it would hold no checkpoint, samples or scores, only clutter `runs/` and
    `ganlab-summary`. The error itself reaches the console."""
    try:
        yield
    except BaseException:
        if steps.batches == 0:
            _remove_unstarted(output_dir)
        raise


@rank_zero_only
def _remove_unstarted(output_dir: Path) -> None:
    if not output_dir.is_dir():
        return
    names = {path.name for path in output_dir.iterdir()}
    if not all(name in WRITTEN_AT_START or name.endswith(".log") for name in names):
        return  # something else lives there (e.g. hydra.run.dir=.): not ours to remove
    shutil.rmtree(output_dir, ignore_errors=True)
    # Its <model>_<data> folder too when nothing else is there, and the folders above it that
    # are left empty inside the working directory (runs/train, runs in a fresh folder).
    cwd = Path.cwd().resolve()
    for parent in output_dir.resolve().parents:
        if parent != output_dir.resolve().parent and not parent.is_relative_to(cwd):
            break
        if parent == cwd:
            break
        with contextlib.suppress(OSError):
            parent.rmdir()  # only an empty folder
            continue
        break
    log.info("removed the run directory %s: the run stopped before its first step", output_dir)


@rank_zero_only
def report_final_scores(trainer: pl.Trainer) -> None:
    """One line of the last evaluation's `val/*` scores, and where all of them are kept."""
    scores = {
        name: float(value)
        for name, value in sorted(trainer.callback_metrics.items())
        if name.startswith("val/") and value.numel() == 1
    }
    if not scores:
        return
    log.info("final scores: %s", ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    for callback in trainer.callbacks:
        if isinstance(callback, SampleQualityCallback) and callback.path is not None:
            log.info("every evaluation with its protocol: %s", callback.path.resolve())

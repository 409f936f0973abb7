"""`ganlab-train`: compose a run from configs, then fit it with Lightning."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from ganlab.checkpoint import check_resumable, checkpoint_to_resume
from ganlab.cli import choice, entry_point, resolve
from ganlab.loggers import finish_runs
from ganlab.resume import check_resume_changes, flatten, resume_callbacks
from ganlab.run_end import StepCounter, removed_unless_started, report_final_scores
from ganlab.speed import float32_matmul_precision

log = logging.getLogger("ganlab")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a dict-shaped group (callbacks, logger); null entries are off."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None]


def continue_logger_runs(cfg: DictConfig, ckpt: dict[str, Any]) -> None:
    """A resumed run logs into the same W&B run as the interrupted one."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    versions = ckpt["ganlab"].get("logger_versions", {})
    if wandb is not None and wandb.get("id") is None and versions.get("WandbLogger"):
        with open_dict(wandb):
            wandb.id = versions["WandbLogger"]
            wandb.resume = "allow"


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Fit the run `cfg` describes; `extra_callbacks` join the configured ones."""
    resolve(cfg)
    ckpt_path, resumed_callbacks = None, []
    if cfg.get("ckpt_path"):
        # Read (safely) and checked before anything runs; a newest file that a killed write
        # left unreadable gives way to the previous one.
        ckpt_path, ckpt = checkpoint_to_resume(cfg.ckpt_path)
        check_resumable(ckpt, ckpt_path)
        continue_logger_runs(cfg, ckpt)
        run_config = OmegaConf.to_container(cfg, resolve=True)
        changes = check_resume_changes(ckpt["ganlab"]["config"], run_config, ckpt_path)
        resumed_callbacks = resume_callbacks(changes)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    else:  # no seed left over from an earlier run in this process (tests, notebooks)
        os.environ.pop("PL_GLOBAL_SEED", None)

    float32_matmul_precision(cfg)  # TF32 on GPUs with trainer=gpu (docs/speed.md)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    # Progress bars for people at a terminal; CI logs and batch jobs stay readable.
    progress_bar = cfg.trainer.get("enable_progress_bar")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")) + resumed_callbacks + [*extra_callbacks],
        logger=instantiate_group(cfg.get("logger")) or False,
        enable_progress_bar=sys.stderr.isatty() if progress_bar is None else progress_bar,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(flatten(model.run_config))
    output_dir = Path(cfg.paths.output_dir)
    _announce_run(cfg, output_dir)

    failed = True
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        failed = False
    finally:
        finish_runs(trainer.loggers, failed)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    report_final_scores(trainer)
    rank_zero_only(log.info)("run directory: %s", output_dir.resolve())
    return metrics


@rank_zero_only
def _announce_run(cfg: DictConfig, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    log.info("run directory: %s", output_dir.resolve())


@entry_point("ganlab-train", "train")
def main(cfg: DictConfig) -> float | None:
    if choice("debug") not in ("None", "?"):
        log.warning(
            "debug=%s checks a composition: its scores come from a few hundred samples and a "
            "small reference set, and are not comparable with other runs' scores",
            choice("debug"),
        )
    steps = StepCounter()
    with removed_unless_started(Path(cfg.paths.output_dir), steps):
        metrics = train(cfg, extra_callbacks=[steps])
        # A sweeper (e.g. Optuna) minimizes the metric named by `optimized_metric`.
        name = cfg.get("optimized_metric")
        return metrics.get(name) if name else None


if __name__ == "__main__":
    main()

"""`ganlab-train`: compose a run from configs, then fit it with Lightning."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from ganlab.checkpoint import existing_checkpoint, read_checkpoint
from ganlab.cli import CONFIG_DIR, resolve, user_errors
from ganlab.loggers import finish_runs

log = logging.getLogger("ganlab")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a dict-shaped group (callbacks, logger); null entries are off."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"n_critic": 5}} -> {"model.n_critic": 5}: filterable columns in run tables."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def continue_logger_runs(cfg: DictConfig, ckpt_path: Path) -> None:
    """A resumed run logs into the same W&B run as the interrupted one."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    versions = read_checkpoint(ckpt_path)["ganlab"].get("logger_versions", {})
    if wandb is not None and wandb.get("id") is None and versions.get("WandbLogger"):
        with open_dict(wandb):
            wandb.id = versions["WandbLogger"]
            wandb.resume = "allow"


def train(cfg: DictConfig) -> dict[str, float]:
    resolve(cfg)
    ckpt_path = existing_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if ckpt_path is not None:
        continue_logger_runs(cfg, ckpt_path)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    # Progress bars for people at a terminal; CI logs and batch jobs stay readable.
    progress_bar = cfg.trainer.get("enable_progress_bar")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=instantiate_group(cfg.get("logger")) or False,
        enable_progress_bar=sys.stderr.isatty() if progress_bar is None else progress_bar,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(flatten(model.run_config))
    output_dir = Path(cfg.paths.output_dir)
    _announce_run(cfg, output_dir)

    failed = True
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        failed = False
    finally:
        finish_runs(trainer.loggers, failed)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    rank_zero_only(log.info)("run directory: %s", output_dir.resolve())
    return metrics


@rank_zero_only
def _announce_run(cfg: DictConfig, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    log.info("run directory: %s", output_dir.resolve())


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors("ganlab-train"):
        metrics = train(cfg)
        # A sweeper (e.g. Optuna) minimizes the metric named by `optimized_metric`.
        name = cfg.get("optimized_metric")
        return metrics.get(name) if name else None


if __name__ == "__main__":
    main()

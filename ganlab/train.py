"""`ganlab-train`: compose a run from configs, then fit it with Lightning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from ganlab.checkpoint import existing_checkpoint
from ganlab.cli import CONFIG_DIR, resolve, user_errors

log = logging.getLogger("ganlab")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a dict-shaped group (callbacks, logger); null entries are off."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None]


def train(cfg: DictConfig) -> dict[str, float]:
    resolve(cfg)
    ckpt_path = existing_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=instantiate_group(cfg.get("logger")) or False,
    )
    output_dir = Path(cfg.paths.output_dir)
    _announce_run(cfg, output_dir)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

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

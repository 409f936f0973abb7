"""Scores logged during training: `val/fid`, `val/is_mean`, ... (images), `val/modes`, ... (2D),
`val/psnr`, `val/ssim`, ... (translation models, on the data's eval split)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from ganlab.metrics.evaluator import Processes, SampleQuality
from ganlab.metrics.fidelity import ExtractorUnavailable
from ganlab.metrics.translation_eval import TranslationQuality, is_translation_model

log = logging.getLogger("ganlab")


class SampleQualityCallback(pl.Callback):
    """Every `every_n_epochs` epochs and after the last one, evaluate the (EMA) generator, log
    each score as `val/<key>` on every rank, and append scores with their protocol to
    `dirpath/metrics.json`. A checkpoint callback can monitor `val/fid`.

    A translation model is scored on its data's eval split instead: `val/psnr`, `val/ssim`
    (`val/psnr_y`, `val/ssim_y` for super-resolution; hole scores for inpainting), LPIPS and FID
    only when `metrics` names them; `num_samples` caps the items scored (null: all)."""

    def __init__(
        self,
        every_n_epochs: int = 10,
        dirpath: str | None = None,
        lpips_net: str = "alex",
        lpips_weights_path: str | None = None,
        **evaluator: Any,
    ):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.path = Path(dirpath) / "metrics.json" if dirpath else None
        self.evaluator = SampleQuality(**evaluator)
        self.translation = TranslationQuality(
            metrics=evaluator.get("metrics"),
            num_samples=evaluator.get("num_samples"),
            batch_size=evaluator.get("batch_size", 16),
            seed=evaluator.get("seed", 0),
            use_ema=evaluator.get("use_ema", True),
            lpips_net=lpips_net,
            lpips_weights_path=lpips_weights_path,
            lpips_by_default=False,  # every few epochs: the cheap scores unless asked
            feature_extractor=evaluator.get("feature_extractor"),
            feature_extractor_weights_path=evaluator.get("feature_extractor_weights_path"),
        )
        self.unavailable: str | None = None

    def evaluator_for(self, pl_module: pl.LightningModule) -> SampleQuality | TranslationQuality:
        return self.translation if is_translation_model(pl_module) else self.evaluator

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.datamodule is not None:  # a bad metric name fails before training
            self.evaluator_for(pl_module).resolve_metrics(trainer.datamodule)
            if not is_translation_model(pl_module):  # so does cas for an unconditional model
                self.evaluator.check_model(pl_module, trainer.datamodule)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.should_stop or epoch + 1 == trainer.max_epochs
        if self.unavailable or ((epoch + 1) % self.every_n_epochs and not last):
            return
        context = {
            "epoch": epoch,
            "step": trainer.global_step,
            "images_seen": getattr(pl_module, "images_seen", None),
            "selection": "last",
        }
        try:
            result = self.evaluator_for(pl_module).evaluate(
                pl_module,
                trainer.datamodule,
                Processes.of_trainer(trainer, pl_module.device),
                context,
            )
        except ExtractorUnavailable as err:
            self.unavailable = str(err)
            if trainer.is_global_zero:
                log.warning(
                    "sample-quality metrics are off for this run; training goes on. %s", err
                )
            return
        pl_module.log_dict({f"val/{k}": float(v) for k, v in result.scores.items()})
        if trainer.is_global_zero:
            if self.path is not None:
                self._append(result.record())
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):  # the protocol beside the scores it explains
                    logger.experiment.summary["val/protocol"] = result.protocol

    def _append(self, record: dict[str, Any]) -> None:
        history = json.loads(self.path.read_text()) if self.path.is_file() else []
        history.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(history, indent=2) + "\n")

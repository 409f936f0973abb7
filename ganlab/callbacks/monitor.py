"""TrainingMonitor: judges the alarms on every logging step from the values the model logged
(one host read per logging step, none on other steps), logs `alarm/<name>` (0/1), warns once per
alarm with advice, and at the end of training writes the views (latent interpolation grid,
memorisation check) to `dirpath` and to the W&B/TensorBoard loggers."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image

from ganlab.monitor.alarms import Alarms, AlarmSettings, check_number
from ganlab.monitor.views import (
    FEATURE_NAME,
    diversity,
    interpolation_images,
    memorisation,
    modes_reached,
    read_images,
)

log = logging.getLogger("ganlab")


class TrainingMonitor(pl.Callback):
    """Alarms during training and views at its end; see docs/monitor.md for every option."""

    def __init__(
        self,
        dirpath: str,
        alarms: bool = True,
        warmup_steps: int = 200,
        warmup_fraction: float = 0.1,
        window: int = 10,
        d_accuracy: float = 0.95,
        d_wins_g_update: float | None = 1e-3,
        vanishing_ratio: float = 0.01,
        divergence_growth: float = 2.0,
        loss_growth: float = 10.0,
        collapse_every_n_logs: int = 5,
        collapse_samples: int = 256,
        collapse_window: int = 3,
        diversity_fraction: float = 0.25,
        modes_fraction: float = 0.5,
        views: bool = True,
        interpolation_rows: int = 4,
        interpolation_steps: int = 8,
        memorisation_samples: int = 32,
        memorisation_reference: int = 1000,
        memorisation_quantile: float = 0.05,
        neighbours: int = 3,
        seed: int = 0,
    ) -> None:
        self.settings = AlarmSettings(
            warmup_steps=warmup_steps,
            window=window,
            d_accuracy=d_accuracy,
            d_wins_g_update=d_wins_g_update,
            vanishing_ratio=vanishing_ratio,
            diversity_fraction=diversity_fraction,
            modes_fraction=modes_fraction,
            collapse_window=collapse_window,
            divergence_growth=divergence_growth,
            loss_growth=loss_growth,
        )
        for option, value, low in (
            ("collapse_every_n_logs", collapse_every_n_logs, 1),
            ("collapse_samples", collapse_samples, 2),
            ("interpolation_rows", interpolation_rows, 1),
            ("interpolation_steps", interpolation_steps, 2),
            ("memorisation_samples", memorisation_samples, 1),
            ("memorisation_reference", memorisation_reference, 1),
            ("neighbours", neighbours, 1),
        ):
            check_number(option, value, low, float("inf"), integer=True)
        check_number("memorisation_quantile", memorisation_quantile, 0.0, 1.0)
        check_number("warmup_fraction", warmup_fraction, 0.0, 1.0)
        self.warmup_fraction = warmup_fraction
        self.dirpath = Path(dirpath)
        self.alarms_on = alarms
        self.views_on = views
        self.collapse_every_n_logs = collapse_every_n_logs
        self.collapse_samples = collapse_samples
        self.interpolation_rows = interpolation_rows
        self.interpolation_steps = interpolation_steps
        self.memorisation_samples = memorisation_samples
        self.memorisation_reference = memorisation_reference
        self.memorisation_quantile = memorisation_quantile
        self.neighbours = neighbours
        self.seed = seed
        self.alarms = Alarms(self.settings)
        self._last_step: int | None = None
        self._logs_seen = 0
        self._collapse_reference: tuple[float, bool] | None = None  # (value, counts modes)

    # ------------------------------------------------------------------ alarms
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A long run gets a longer warm-up: early transients (a few modes first) are normal.
        planned = trainer.estimated_stepping_batches  # batches, i.e. D steps, of the whole run
        warmup = self.settings.warmup_steps
        if math.isfinite(planned):
            warmup = max(warmup, int(self.warmup_fraction * planned))
        self.alarms = Alarms(replace(self.settings, warmup_steps=warmup))  # resumed: afresh
        self._collapse_reference = None
        if not self.alarms_on or getattr(pl_module, "input_kind", "latent") != "latent":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "real_dataset"):
            return
        centers = getattr(datamodule, "centers", None)
        if centers is not None:
            self._collapse_reference = (float(len(centers)), True)
            return
        real = read_images(
            datamodule.real_dataset(getattr(datamodule, "train_split", "train")),
            self.collapse_samples,
            self.seed,
            getattr(datamodule, "data_key", pl_module.data_key),
        )
        self._collapse_reference = (diversity(real), False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        record = getattr(pl_module, "monitor_record", None)
        if not self.alarms_on or record is None or record[0] == self._last_step:
            return
        step, stats = record
        self._last_step = step
        self._logs_seen += 1
        names = list(stats)
        values = torch.stack([stats[n].float().reshape(()) for n in names]).cpu().tolist()
        messages = self.alarms.observe(step, dict(zip(names, values, strict=True)))
        logged = {}
        if self._collapse_reference and self._logs_seen % self.collapse_every_n_logs == 0:
            messages += self.collapse_check(trainer, pl_module, step, logged)
        for message in messages:
            if trainer.is_global_zero:
                log.warning(message)
        logged.update({f"alarm/{name}": float(on) for name, on in self.alarms.state.items()})
        pl_module.log_dict(logged, prog_bar=False)

    def collapse_check(self, trainer, pl_module, step: int, logged: dict) -> list[str]:
        """Diversity of a fixed latent batch from the raw generator (the one being trained),
        logged as `monitor/diversity_ratio` (images) or `monitor/modes_reached` (2D)."""
        reference, counts_modes = self._collapse_reference
        labels = None
        if getattr(pl_module, "conditional", False):
            labels = [i % pl_module.num_classes for i in range(self.collapse_samples)]
        samples = pl_module.sample(
            self.collapse_samples, labels=labels, seed=self.seed, use_ema=False
        ).cpu()
        if counts_modes:
            value, near_share = modes_reached(samples, trainer.datamodule.centers)
            logged["monitor/modes_reached"] = float(value)
            if near_share < 0.5:  # most points between modes: still learning, not judged
                return []
        else:
            value = diversity(samples)
            logged["monitor/diversity_ratio"] = value / reference
        return self.alarms.observe_diversity(step, value, reference, modes=counts_modes)

    # ------------------------------------------------------------------ end of training
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        if self.alarms_on:
            fired = self.alarms.fired
            (self.dirpath / "alarms.json").write_text(json.dumps(fired, indent=2) + "\n")
        if self.views_on and self.draws_images(trainer, pl_module):
            for view in (self.write_interpolation, self.write_memorisation):
                try:
                    view(trainer, pl_module)
                except Exception as err:  # noqa: BLE001 - a view never fails a finished run
                    log.warning(
                        "monitor: %s skipped (%s: %s)", view.__name__, type(err).__name__, err
                    )

    @staticmethod
    def draws_images(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Views are for generators of images from latents, with data to compare to."""
        datamodule = trainer.datamodule
        return (
            getattr(pl_module, "input_kind", "latent") == "latent"
            and getattr(pl_module, "latent_dim", None) is not None
            and hasattr(datamodule, "real_dataset")
            and len(getattr(datamodule, "sample_shape", ())) == 3
        )

    def write_interpolation(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        images = interpolation_images(
            pl_module, self.interpolation_rows, self.interpolation_steps, self.seed
        )
        grid = make_grid(images, nrow=self.interpolation_steps, normalize=True, value_range=(-1, 1))
        self._save(trainer, grid, "interpolation")

    def write_memorisation(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        splits = getattr(datamodule, "splits", ())
        held_out_split = next((s for s in ("test", "val", "valid") if s in splits), None)
        if held_out_split is None:
            log.info("memorisation check skipped: data %s has no held-out split", splits)
            return
        key = getattr(datamodule, "data_key", pl_module.data_key)
        train = read_images(datamodule.real_dataset("train"), self.memorisation_reference, 1, key)
        held_out = read_images(
            datamodule.real_dataset(held_out_split), self.memorisation_reference, 2, key
        )
        labels = None
        if getattr(pl_module, "conditional", False):
            labels = [i % pl_module.num_classes for i in range(self.memorisation_samples)]
        samples = pl_module.sample(self.memorisation_samples, labels=labels, seed=self.seed).cpu()
        summary, indices = memorisation(
            samples, train, held_out, self.memorisation_quantile, self.neighbours
        )
        summary["held_out_split"] = held_out_split
        rows = [torch.cat([samples[i : i + 1], train[indices[i]]]) for i in range(len(samples))]
        columns = 1 + indices.shape[1]
        grid = make_grid(torch.cat(rows), nrow=columns, normalize=True, value_range=(-1, 1))
        self._save(trainer, grid, "memorisation")
        (self.dirpath / "memorisation.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info(
            "memorisation check: %.0f%% of %d samples are closer to a training image than %g of "
            "held-out images are (%s); %s",
            100 * summary["share_closer_than_held_out"],
            len(samples),
            self.memorisation_quantile,
            FEATURE_NAME,
            self.dirpath / "memorisation.png",
        )

    def _save(self, trainer: pl.Trainer, grid: torch.Tensor, name: str) -> None:
        path = self.dirpath / f"{name}.png"
        save_image(grid, path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(f"monitor/{name}", [str(path)], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    f"monitor/{name}", grid, global_step=trainer.global_step
                )

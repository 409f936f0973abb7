"""A grid of samples from fixed latents, saved as PNG and handed to the loggers."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image


def class_grid_samples(model: pl.LightningModule, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` samples of each class, class by class: row k of a grid with `per_class`
    columns holds label k, and column j uses latent j in every row, so rows differ only by
    their label."""
    rows = [
        model.sample(per_class, labels=[label] * per_class, seed=seed).cpu()
        for label in range(model.num_classes)
    ]
    return torch.cat(rows)


class SampleGrid(pl.Callback):
    """Every `every_n_epochs` epochs, `num_samples` images from the same latents (`seed`), so the
    grids of one run show how the same samples evolve. Written to `dirpath/epoch_XXXX.png`.

    Conditional models get one row per class instead: `per_class` columns, the same latent in
    every row of a column."""

    def __init__(
        self,
        dirpath: str,
        num_samples: int = 64,
        every_n_epochs: int = 1,
        seed: int = 0,
        per_class: int = 8,
    ):
        if num_samples < 1 or every_n_epochs < 1 or per_class < 1:
            raise ValueError(
                f"SampleGrid needs num_samples, every_n_epochs and per_class >= 1, got "
                f"num_samples={num_samples}, every_n_epochs={every_n_epochs}, per_class={per_class}"
            )
        self.dirpath = Path(dirpath)
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.per_class = per_class

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last_epoch = trainer.should_stop or epoch + 1 == trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        if getattr(pl_module, "conditional", False):
            samples, nrow = class_grid_samples(pl_module, self.per_class, self.seed), self.per_class
        else:
            samples = pl_module.sample(self.num_samples, seed=self.seed).cpu()
            nrow = int(self.num_samples**0.5)
        if samples.dim() != 4:
            return  # not images (e.g. 2D points); their plots belong to other callbacks
        grid = make_grid(samples, nrow=nrow, normalize=True, value_range=(-1, 1))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch:04d}.png"
        save_image(grid, path)
        self._log_image(trainer, grid, path, epoch)

    @staticmethod
    def _log_image(trainer: pl.Trainer, grid: torch.Tensor, path: Path, epoch: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples", [str(path)], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, global_step=trainer.global_step)

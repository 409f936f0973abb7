"""A grid of samples from fixed latents (a scatter plot for 2D points; rows of input | output |
target for translation models), saved as PNG and handed to the loggers."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid, save_image

from ganlab.metrics.translation_eval import is_translation_model
from ganlab.plots import scatter_plot

MAX_TRANSLATION_ROWS = 8  # input | output | target rows of a translation grid


def translation_rows(model: pl.LightningModule, items: list[dict[str, torch.Tensor]]):
    """Input, output and (where the data has one) target of each item, shown at the target's
    size (a super-resolution input is enlarged, nearest neighbour) with the output's channels;
    returns the images in row order and the number of columns."""
    columns = 3 if "target" in items[0] else 2
    images = []
    for item in items:
        source = item.get("source", item.get("a")).unsqueeze(0)
        mask = item.get("mask")
        output = model.translate(source, None if mask is None else mask.unsqueeze(0)).cpu()
        row = [source, output] + ([item["target"].unsqueeze(0)] if columns == 3 else [])
        height, width = row[-1].shape[-2:]
        channels = output.shape[1]
        for image in row:
            if image.shape[-2:] != (height, width):
                image = F.interpolate(image, size=(height, width), mode="nearest")
            if image.shape[1] != channels:  # gray beside RGB
                image = image.mean(1, keepdim=True).expand(-1, channels, -1, -1)
            images.append(image[0])
    # items of a folder may differ in size: show every row at the first row's size
    size = images[0].shape[-2:]
    images = [
        F.interpolate(i[None], size=size, mode="bilinear")[0] if i.shape[-2:] != size else i
        for i in images
    ]
    return torch.stack(images), columns


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
    every row of a column. 2D points (toy mixtures) get a scatter plot of `num_points` samples
    over the data's mode centres instead."""

    def __init__(
        self,
        dirpath: str,
        num_samples: int = 64,
        every_n_epochs: int = 1,
        seed: int = 0,
        per_class: int = 8,
        num_points: int = 1000,
    ):
        if min(num_samples, every_n_epochs, per_class, num_points) < 1:
            raise ValueError(
                f"SampleGrid needs num_samples, every_n_epochs, per_class and num_points >= 1, "
                f"got num_samples={num_samples}, every_n_epochs={every_n_epochs}, "
                f"per_class={per_class}, num_points={num_points}"
            )
        self.dirpath = Path(dirpath)
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.per_class = per_class
        self.num_points = num_points
        self._items: list[dict[str, torch.Tensor]] | None = None  # translation: fixed inputs

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last_epoch = trainer.should_stop or epoch + 1 == trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch:04d}.png"
        if is_translation_model(pl_module):
            # test_mode "train" keeps dropout on: seeded, and the run's random streams untouched
            devices = [pl_module.device] if pl_module.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                samples, nrow = translation_rows(pl_module, self.translation_items(trainer))
        elif getattr(pl_module, "conditional", False):
            samples, nrow = class_grid_samples(pl_module, self.per_class, self.seed), self.per_class
        else:
            samples = pl_module.sample(self.num_samples, seed=self.seed).cpu()
            nrow = int(self.num_samples**0.5)
        if samples.dim() == 4:
            grid = make_grid(samples, nrow=nrow, normalize=True, value_range=(-1, 1))
            save_image(grid, path)
            self._log_image(trainer, grid, path, epoch)
            return
        # 2D points: a scatter plot over the real modes, with more samples than a grid holds
        points = pl_module.sample(self.num_points, seed=self.seed).cpu()
        centers = getattr(trainer.datamodule, "centers", None)
        picture = scatter_plot(points, centers, title=f"epoch {epoch}")
        picture.save(path)
        self._log_image(trainer, pil_to_tensor(picture), path, epoch)

    def translation_items(self, trainer: pl.Trainer) -> list[dict[str, torch.Tensor]]:
        """The first items of the data's eval split, read once: every grid shows the same."""
        if self._items is None:
            datamodule = trainer.datamodule
            dataset = datamodule.real_dataset(getattr(datamodule, "eval_split", "test"))
            count = min(self.num_samples, MAX_TRANSLATION_ROWS, len(dataset))
            self._items = [dataset[i] for i in range(count)]
        return self._items

    @staticmethod
    def _log_image(trainer: pl.Trainer, grid: torch.Tensor, path: Path, epoch: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("samples", [str(path)], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, global_step=trainer.global_step)

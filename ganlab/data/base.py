"""What every ganlab datamodule shares: the base class, the error type, validation helpers,
a dict-yielding tensor dataset and the image transform."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import transforms

from ganlab.errors import ConfigError


class DataError(ConfigError):
    """A data option or file is wrong; the message names the bad value and the fix."""


def check_choice(option: str, value: Any, accepted: Sequence[Any]) -> None:
    if value not in accepted:
        names = ", ".join(repr(a) for a in accepted)
        raise DataError(f"{option}={value!r} is not supported; accepted: {names}")


def check_int(option: str, value: Any, minimum: int) -> None:
    # bool is an int subclass; `batch_size=True` is a typo, not a size
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{option}={value!r} must be an integer >= {minimum}")


def check_num_classes(given: int | None, true: int | None, dataset: str) -> int | None:
    """`num_classes` is a fact of the dataset: None means "take it", anything else must match."""
    if given is not None and given != true:
        fact = "has no class labels" if true is None else f"has {true} classes"
        fix = "null" if true is None else str(true)
        raise DataError(
            f"num_classes={given!r} does not match {dataset}, which {fact}; "
            f"set data.num_classes={fix} (or leave it null)"
        )
    return true


class TensorDictDataset(Dataset):
    """Equal-length tensors served one row at a time as a dict (batches collate to dicts)."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors must have equal lengths, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: t[index] for key, t in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch in one indexing per tensor (the DataLoader's batched fetch): rows one
        by one cost more than a small model's training step."""
        return {key: t[indices] for key, t in self.tensors.items()}


def collate_batch(batch: dict[str, torch.Tensor] | list[Any]) -> Any:
    """A batch that `__getitems__` already stacked passes through; a list of samples collates."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class ConvertMode:
    """PIL mode conversion: RGB->L uses ITU-R 601 luminance, L->RGB repeats the channel.

    A class, not a lambda, so transforms pickle into spawned DataLoader workers."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)

    def __repr__(self) -> str:
        return f"ConvertMode({self.mode!r})"


class CenterSquare:
    """Crop the central square of side min(width, height); a class so it pickles."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return transforms.functional.center_crop(image, min(image.size))

    def __repr__(self) -> str:
        return "CenterSquare()"


def image_transform(
    resolution: int, channels: int, center_crop: bool = True
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float32 (channels, resolution, resolution) in [-1, 1].

    Crops before resizing, so nothing outside the kept square bleeds in through the filter.
    Bilinear resize with antialiasing (PIL's); the filter is part of an FID protocol.
    """
    steps: list[Callable] = [ConvertMode("L" if channels == 1 else "RGB")]
    if center_crop:
        steps.append(CenterSquare())
    steps += [
        transforms.Resize((resolution, resolution)),  # without center_crop: squash to a square
        transforms.ToTensor(),
        transforms.Normalize([0.5] * channels, [0.5] * channels),
    ]
    return transforms.Compose(steps)


class GANDataModule(pl.LightningDataModule):
    """Base of every ganlab datamodule.

    Subclasses set `name`, `data_key`, `sample_shape`, `num_classes`, `splits` in `__init__`
    and implement `_load(split)`. Training shuffles with a generator owned by the datamodule
    whose state is saved in checkpoints, so a resumed run sees the same order as a straight one.
    """

    name: str = "data"
    data_key: str = "image"
    sample_shape: tuple[int, ...]
    num_classes: int | None = None
    splits: tuple[str, ...] = ("train",)
    # The extractor that image-quality metrics use unless told otherwise (part of a score's
    # protocol); None for data that are not images.
    default_feature_extractor: str | None = "inception-v3-compat"

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, 1)
        check_int("num_workers", num_workers, 0)
        if seed is None:  # an unseeded run: a fresh order, still saved in checkpoints
            seed = int(np.random.SeedSequence().entropy % 2**63)
        check_int("seed", seed, 0)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.drop_last = drop_last
        self.train_split = "train"
        self._shuffle_generator = torch.Generator().manual_seed(seed)
        self._datasets: dict[str, Dataset] = {}

    def _load(self, split: str) -> Dataset:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What makes two datamodules serve the same samples: the key of cached reference
        statistics. Loader settings (batch size, workers, seed, where files live) are not in it."""
        return {"dataset": self.name, "sample_shape": list(self.sample_shape)}

    def real_dataset(self, split: str = "train") -> Dataset:
        """The dict-yielding dataset of `split`, loaded once and cached."""
        check_choice(f"{self.name} split", split, self.splits)
        if split not in self._datasets:
            self._datasets[split] = self._load(split)
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        self.real_dataset(self.train_split)  # surface data errors before the first step

    def check_one_batch(self, dataset: Dataset) -> None:
        """Refuse a training split too small for one batch (no step would ever run)."""
        if self.drop_last and len(dataset) < self.batch_size:
            raise DataError(
                f"{self.name} ({self.train_split}) has {len(dataset)} samples, fewer than "
                f"batch_size={self.batch_size} with drop_last=true, so no batch would be made; "
                "lower data.batch_size or set data.drop_last=false"
            )

    def train_dataloader(self) -> DataLoader:
        dataset = self.real_dataset(self.train_split)
        self.check_one_batch(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            generator=self._shuffle_generator,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_generator": self._shuffle_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # in place: a DataLoader built before the restore holds this very generator
        self._shuffle_generator.set_state(state_dict["shuffle_generator"])

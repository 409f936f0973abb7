"""scikit-learn's bundled 8x8 digits: the dataset that needs no download (the default run)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ganlab.data.base import (
    GANDataModule,
    TensorDictDataset,
    check_choice,
    check_int,
    check_num_classes,
)

NUM_DIGITS = 1797


def digits_split_indices(split: str) -> np.ndarray:
    """Fixed stratified 80/20 split, independent of any seed so evaluations stay comparable."""
    labels = load_digits().target
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    return {"train": np.sort(train), "test": np.sort(test), "all": np.arange(len(labels))}[split]


class DigitsDataModule(GANDataModule):
    """1797 handwritten digits (values 0..16) scaled to [-1, 1] and resized bilinearly."""

    splits = ("train", "test", "all")

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 1,
        num_classes: int | None = 10,
        split: str = "train",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("resolution", resolution, 8)  # the source is 8x8: upsampling only
        check_choice("channels", channels, (1, 3))
        check_choice("digits split", split, self.splits)
        self.name = "digits"
        # Inception weights need a download; a small classifier of the digits does not.
        self.default_feature_extractor = "ganlab-digits"
        self.data_key = "image"
        self.resolution = resolution
        self.channels = channels
        self.num_classes = check_num_classes(num_classes, 10, "digits")
        self.sample_shape = (channels, resolution, resolution)
        self.split = self.train_split = split

    def _load(self, split: str) -> TensorDictDataset:
        digits = load_digits()
        images = torch.from_numpy(digits.images).float()[:, None] / 16 * 2 - 1
        images = F.interpolate(
            images,
            size=(self.resolution, self.resolution),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        ).clamp(-1, 1)
        images = images.repeat(1, self.channels, 1, 1).contiguous()
        labels = torch.from_numpy(digits.target).long()
        index = torch.from_numpy(digits_split_indices(split))
        return TensorDictDataset(image=images[index], label=labels[index])

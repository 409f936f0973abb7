"""`data=<task>_photos`: a synthetic set cut from scikit-image's photos, written to disk once in
the layout of the real dataset it stands for, then read by that dataset's own loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganlab.data.base import check_choice
from ganlab.data.paired import WatermarkPairsDataModule
from ganlab.data.photos import PHOTO_TASKS, prepare_photos
from ganlab.data.restoration import DenoisingFolderDataModule, InpaintingFolderDataModule
from ganlab.data.superres import SuperResolutionDataModule
from ganlab.data.translation import TranslationDataModule
from ganlab.data.unpaired import UnalignedDataModule

# task -> (the real layout's loader, where that loader finds each part of the written set)
LOADERS: dict[str, tuple[type[TranslationDataModule], Callable[[Path], dict[str, Any]]]] = {
    "watermark": (WatermarkPairsDataModule, lambda root: {"root": str(root)}),  # CLWD
    "sr4": (
        SuperResolutionDataModule,  # DIV2K for training, a Set5-style folder for testing
        lambda root: {
            "hr_dir": str(root / "train" / "HR"),
            "lr_dir": str(root / "train" / "LR_bicubic" / "X4"),
            "test_dirs": [str(root / "test")],
        },
    ),
    "inpaint": (
        InpaintingFolderDataModule,  # training and test masks are separate, fixed mask sets
        lambda root: {
            "root": str(root),
            "masks": str(root / "masks_train.npz"),
            "test_masks": str(root / "masks_test.npz"),
        },
    ),
    "denoise": (DenoisingFolderDataModule, lambda root: {"root": str(root)}),
    "cyclegan": (UnalignedDataModule, lambda root: {"root": str(root)}),  # trainA/trainB/...
}


def photo_data(
    task: str,  # one of PHOTO_TASKS
    root: str,  # where the set is written (once) and read from
    num_train: int = 320,  # training crops
    num_test: int = 48,  # held-out crops, all from the held-out photo
    photo_seed: int = 0,  # the set's own seed: the same files for every run seed
    train_watermarks: str = "fixed",  # watermark: "varied" adds random strings and shapes
    **loader_options: Any,  # the loader's own options (batch_size, crop_size, sigma, ...)
) -> TranslationDataModule:
    check_choice("data.task", task, PHOTO_TASKS)
    written = prepare_photos(
        task,
        root,
        num_train=num_train,
        num_test=num_test,
        seed=photo_seed,
        train_watermarks=train_watermarks,
    )
    loader, parts = LOADERS[task]
    return loader(**parts(Path(written)), **loader_options)

"""A folder of image files, optionally one subfolder per class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ganlab.data.base import (
    DataError,
    GANDataModule,
    check_choice,
    check_int,
    check_num_classes,
    image_transform,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# what PIL raises on a broken file: OSError (incl. UnidentifiedImageError), SyntaxError (PNG)...
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def find_images(root: Path) -> list[Path]:
    """Image files under `root`, sorted; hidden entries (e.g. macOS `._x.jpg`) are skipped."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        found += [
            Path(folder, f)
            for f in files
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(found)


class ImageFiles(Dataset):
    """Image files with their labels, decoded and transformed on access."""

    def __init__(self, files: list[Path], labels: list[int], transform) -> None:
        self.files = files
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                # photos often store their rotation in EXIF only
                image = self.transform(ImageOps.exif_transpose(image))
        except _PIL_ERRORS as err:
            raise DataError(f"cannot load image {path}: {err}; fix or remove the file") from err
        return {"image": image, "label": torch.tensor(self.labels[index], dtype=torch.int64)}


class ImageFolderDataModule(GANDataModule):
    """Every image under `path`. If all images sit in subfolders, label = sorted subfolder
    index (like torchvision's ImageFolder) and `num_classes` is their count; else label 0."""

    def __init__(
        self,
        path: str,
        resolution: int = 64,
        channels: int = 3,
        center_crop: bool = True,
        num_classes: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("resolution", resolution, 1)
        check_choice("channels", channels, (1, 3))
        root = Path(os.path.expanduser(str(path))).resolve()
        if not root.is_dir():
            state = "is not a folder" if root.exists() else "does not exist"
            raise DataError(
                f"image_folder path {root} {state}; set data.path to a folder of images"
            )
        self.files = find_images(root)
        if not self.files:
            raise DataError(
                f"image_folder path {root} contains no images; accepted extensions (any case): "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
        relative = [f.relative_to(root) for f in self.files]
        if all(len(r.parts) > 1 for r in relative):
            self.classes = sorted({r.parts[0] for r in relative})
            index = {c: i for i, c in enumerate(self.classes)}
            self.labels = [index[r.parts[0]] for r in relative]
            true_classes: int | None = len(self.classes)
        else:
            self.classes = []
            self.labels = [0] * len(self.files)
            true_classes = None
        self.name = "image_folder"
        self.data_key = "image"
        self.path = str(root)
        self.resolution = resolution
        self.channels = channels
        self.center_crop = center_crop
        self.num_classes = check_num_classes(num_classes, true_classes, f"image_folder {root}")
        self.sample_shape = (channels, resolution, resolution)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "path": self.path, "center_crop": self.center_crop}

    def _load(self, split: str) -> ImageFiles:
        # reading headers is cheap and finds broken files now, not hours into training
        broken = []
        for file in self.files:
            try:
                with Image.open(file):
                    pass
            except _PIL_ERRORS as err:
                broken.append(f"{file} ({err})")
        if broken:
            shown = "\n  ".join(broken[:5])
            raise DataError(
                f"image_folder: {len(broken)} of {len(self.files)} files under {self.path} "
                f"cannot be read as images; fix or remove them. First ones:\n  {shown}"
            )
        transform = image_transform(self.resolution, self.channels, self.center_crop)
        return ImageFiles(self.files, self.labels, transform)

"""What the image-to-image datamodules share: finding the layout's folders, matching files by
name, loading images to [-1, 1] tensors, and random crops/flips drawn once per item and applied
to source, target and mask together.

Train-time randomness comes from the datamodule's own generator, in the main process: the
sampler hands every item an index and a seed, so an epoch's crops, flips and draws are the same
for any number of workers, and resume with the saved shuffle state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ganlab.data.base import DataError, GANDataModule, check_choice, check_int, collate_batch
from ganlab.data.folder import (
    _PIL_ERRORS,
    IMAGE_EXTENSIONS,
    contents_fingerprint,
    describe,
    find_bad_files,
    find_images,
    to_eight_bit,
)

TRANSLATION_TASKS = ("paired", "sr", "inpainting", "watermark", "denoise", "unpaired")
# Eval-time masks and noise are drawn from this seed plus the item's index, never from the
# run's seed: every run scores on the same degraded inputs.
EVAL_SEED = 20_240_501
SHOWN_NAMES = 5  # messages list this many file names, then give the count
# EXIF orientations that swap width and height (rotations by 90 or 270 degrees)
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def resolve_root(option: str, path: Any, layout: str) -> Path:
    """`path` as an absolute folder, or a DataError naming the option and the layout expected."""
    if path is None:
        raise DataError(f"data.{option} is not set; set it to a folder laid out as {layout}")
    root = Path(os.path.expanduser(str(path))).resolve()
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.{option}={root} {state}; set it to a folder laid out as {layout}")
    return root


def subfolders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_load_and_crop(load_size: int, crop_size: int) -> None:
    """pix2pix/CycleGAN sizes: images are resized to load_size, then a crop_size crop is cut."""
    check_int("load_size", load_size, 1)
    check_int("crop_size", crop_size, 1)
    if crop_size > load_size:
        raise DataError(
            f"crop_size={crop_size} is larger than load_size={load_size}: training crops "
            "are cut from the image resized to load_size; set crop_size <= load_size"
        )


def require_folder(root: Path, relative: str, layout: str) -> Path:
    """root/relative, or a DataError saying which folders `root` does have."""
    folder = root / relative
    if not folder.is_dir():
        parent = folder.parent
        found = ", ".join(subfolders(parent)) if parent.is_dir() else "none"
        raise DataError(
            f"{folder} is missing; folders found in {parent}: {found or 'none'}; "
            f"expected layout: {layout}"
        )
    return folder


def list_images(folder: Path, what: str) -> list[Path]:
    """The image files under `folder`, sorted; a DataError if there are none."""
    files = find_images(folder)
    if not files:
        raise DataError(
            f"{what} folder {folder} contains no images; accepted extensions (any case): "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return files


def shown(names: Sequence[str]) -> str:
    more = len(names) - SHOWN_NAMES
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")


def match_by_stem(
    files: list[Path], candidates: list[Path], what: str, suffixes: Sequence[str] = ("",)
) -> list[Path]:
    """For each file, the candidate whose stem is the file's stem plus one of `suffixes`
    (e.g. `0001.png` -> `0001x4.png`); a DataError naming the files without a partner."""
    by_stem = {c.stem: c for c in candidates}
    matched, missing = [], []
    for file in files:
        partner = next((by_stem[file.stem + s] for s in suffixes if file.stem + s in by_stem), None)
        if partner is None:
            missing.append(file.name)
        else:
            matched.append(partner)
    if missing:
        folder = candidates[0].parent if candidates else "its folder"
        names = " or ".join(f"<name>{s}.<ext>" for s in suffixes)
        raise DataError(
            f"{len(missing)} of {len(files)} files have no {what} in {folder} (looked for "
            f"{names}): {shown(missing)}"
        )
    return matched


def check_decodable(root: Path, files: list[Path], what: str) -> None:
    """Decode every file now (cached per folder contents), not hours into training."""
    bad = find_bad_files(root, files)
    if bad:
        raise DataError(
            f"{what}: {len(bad)} of {len(files)} files under {root} cannot be decoded as "
            f"images; fix or remove them: {describe(bad)}"
        )


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as loaded (after EXIF rotation), read from the header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in SWAPPING_ORIENTATIONS:
                width, height = height, width
    except _PIL_ERRORS as err:
        raise DataError(f"cannot read image {path}: {err}; fix or remove the file") from err
    return width, height


def open_image(path: Path, mode: str) -> Image.Image:
    """The image upright (EXIF), 16-bit scaled to 8, converted to `mode` ("RGB" or "L")."""
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return to_eight_bit(upright, image.format).convert(mode)
    except _PIL_ERRORS as err:
        raise DataError(f"cannot load image {path}: {err}; fix or remove the file") from err


def to_tensor(image: Image.Image) -> Tensor:
    """PIL image -> float32 (C, H, W) in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()) / 127.5 - 1.0


def load_rgb(path: Path, size: int | None = None) -> Tensor:
    """An image file as (3, H, W) in [-1, 1]; resized to size x size (bicubic) if `size`."""
    image = open_image(path, "RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return to_tensor(image)


def item_generator(key: int | tuple[int, int]) -> tuple[int, torch.Generator]:
    """The item's index and its random stream: the seed the sampler drew for it in training;
    the index itself when indexed directly (deterministic, as for eval)."""
    index, seed = key if isinstance(key, tuple) else (key, EVAL_SEED + key)
    return index, torch.Generator().manual_seed(seed)


def coin(generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def randint(high: int, generator: torch.Generator) -> int:
    """Uniform in 0..high-1."""
    return int(torch.randint(high, (), generator=generator))


def check_crop(size: int, height: int, width: int, path: Path, option: str) -> None:
    if size > height or size > width:
        raise DataError(
            f"{option}={size} is larger than {path} ({width}x{height}); lower data.{option} to "
            f"at most {min(height, width)}, or remove the smaller images"
        )


def crop(image: Tensor, top: int, left: int, size: int) -> Tensor:
    return image[..., top : top + size, left : left + size]


def center_crop(image: Tensor, size: int) -> Tensor:
    height, width = image.shape[-2:]
    return crop(image, (height - size) // 2, (width - size) // 2, size)


def random_crop_flip(
    images: dict[str, Tensor], size: int | None, generator: torch.Generator
) -> dict[str, Tensor]:
    """One crop position and one horizontal flip for every image of the item (same H, W)."""
    height, width = next(iter(images.values())).shape[-2:]
    if size is not None:
        top, left = randint(height - size + 1, generator), randint(width - size + 1, generator)
        images = {k: crop(v, top, left, size) for k, v in images.items()}
    if coin(generator):
        images = {k: v.flip(-1) for k, v in images.items()}
    return images


class SeededRandomSampler(Sampler):
    """A random order of `length` items, each handed out as (index, seed): the seed drives the
    item's crops and draws. Both come from `generator` (the datamodule's, saved in checkpoints)."""

    def __init__(self, length: int, generator: torch.Generator) -> None:
        self.length = length
        self.generator = generator

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.length, generator=self.generator).tolist()
        seeds = torch.randint(2**62, (self.length,), generator=self.generator).tolist()
        return iter(zip(order, seeds, strict=True))


class TranslationDataModule(GANDataModule):
    """Base of the image-to-image datamodules: dict items of "source"/"target" (and "mask"),
    or "a"/"b" for unpaired data. Subclasses set `task`, `sample_shape`, `source_shape`,
    `splits`, `settings` (what changes the samples) and `sources` (folders and their files)."""

    task: str = "paired"
    data_key = "target"
    eval_split = "test"
    source_shape: tuple[int, ...]
    default_feature_extractor = "inception-v3-compat"

    def __init__(self, batch_size: int, num_workers: int, seed: int | None, drop_last: bool):
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_choice("task", self.task, TRANSLATION_TASKS)
        self.settings: dict[str, Any] = {}
        self.sources: list[tuple[Path, list[Path]]] = []

    def identity(self) -> dict[str, Any]:
        # the contents, read now: reference statistics of an edited folder are not reused
        contents = [
            {"root": str(root), "contents": contents_fingerprint(root, files)}
            for root, files in self.sources
        ]
        return {
            **super().identity(),
            "task": self.task,
            "source_shape": list(self.source_shape),
            **self.settings,
            "folders": contents,
        }

    def train_dataloader(self) -> DataLoader:
        dataset = self.real_dataset(self.train_split)
        self.check_one_batch(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=SeededRandomSampler(len(dataset), self._shuffle_generator),
            # The loader's per-epoch base seed is drawn from here too, not from the global stream:
            # Lightning makes a resumed run's first iterator before it restores the global RNG,
            # so a global draw there would put dropout and the image pools one draw behind.
            generator=self._shuffle_generator,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def eval_dataloader(self, split: str | None = None, batch_size: int | None = None):
        """The eval split in order, unjittered (items of unequal size need batch_size=1)."""
        return DataLoader(
            self.real_dataset(split or self.eval_split),
            batch_size=batch_size or self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
        )

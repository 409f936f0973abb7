"""Restoration from a folder of clean images, `root/{train,test}/*`, degraded on the fly:
inpainting (holes from a mask set or generated) and denoising (Gaussian noise). Training draws
a fresh degradation per item; the test split's degradation is fixed per index, so every run
and every evaluation sees the same inputs."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data.base import DataError, check_int
from ganlab.data.folder import _PIL_ERRORS, find_images
from ganlab.data.translation import (
    TranslationDataModule,
    center_crop,
    check_crop,
    check_decodable,
    image_size,
    item_generator,
    list_images,
    load_rgb,
    randint,
    random_crop_flip,
    require_folder,
    resolve_root,
)

FOLDER_LAYOUT = "root/{train,test}/*.jpg|png (clean images)"
GENERATED_MASKS = ("centre", "free_form")
# MMagic's DeepFillv2 free-form masks (random_irregular_mask) at 256x256; lengths and widths
# scale with the image. Ranges exclude their upper bound, as numpy's randint does.
STROKE_VERTICES = (4, 10)
STROKE_DIRECTIONS = (1, 6)
STROKE_MAX_ANGLE = 6  # radians, integer-valued as in MMagic
STROKE_LENGTH = (20, 128)
STROKE_WIDTH = (10, 45)
STROKE_AREA = (0.15, 0.65)  # masks covering less or more are drawn again
STROKE_REFERENCE_SIZE = 256
PIXEL_LEVELS = 127.5  # noise sigma is given on 0..255; images are on [-1, 1]


def folder_splits(root: Path, what: str) -> dict[str, list[Path]]:
    return {
        split: list_images(require_folder(root, split, FOLDER_LAYOUT), f"{what} {split}")
        for split in ("train", "test")
    }


def check_sizes(files: list[Path], crop_size: int) -> None:
    for file in files:
        width, height = image_size(file)
        check_crop(crop_size, height, width, file, "crop_size")


def uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def between(bounds: tuple[int, int], generator: torch.Generator) -> int:
    """An integer in [low, high)."""
    return bounds[0] + randint(bounds[1] - bounds[0], generator)


def centre_mask(size: int, hole_size: int) -> Tensor:
    mask = torch.zeros(1, size, size)
    start = (size - hole_size) // 2
    mask[:, start : start + hole_size, start : start + hole_size] = 1.0
    return mask


def strokes(size: int, generator: torch.Generator) -> np.ndarray:
    """MMagic's random_irregular_mask: from each of 4-9 random points, 1-5 brush segments of
    random angle, length and width (round caps, as cv2.line draws them), scaled to `size`."""
    scale = size / STROKE_REFERENCE_SIZE
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for vertex in range(between(STROKE_VERTICES, generator)):
        x, y = float(randint(size, generator)), float(randint(size, generator))
        for _ in range(between(STROKE_DIRECTIONS, generator)):
            angle = 0.01 + randint(STROKE_MAX_ANGLE, generator)
            angle = 2 * math.pi - angle if vertex % 2 == 0 else angle
            length = between(STROKE_LENGTH, generator) * scale
            width = max(1, round(between(STROKE_WIDTH, generator) * scale))
            end_x, end_y = int(x + length * math.cos(angle)), int(y + length * math.sin(angle))
            draw.line((x, y, end_x, end_y), fill=1, width=width)
            for cx, cy in ((x, y), (end_x, end_y)):
                draw.ellipse((cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2), 1)
            x, y = end_x, end_y
    return np.asarray(canvas)


def free_form_mask(size: int, generator: torch.Generator) -> Tensor:
    """Strokes drawn again until they cover 15-65 % of the image (MMagic's area rule)."""
    while not STROKE_AREA[0] < (mask := strokes(size, generator)).mean() < STROKE_AREA[1]:
        pass
    return torch.tensor(mask, dtype=torch.float32)[None]


def binary_levels(values: np.ndarray, where: str) -> np.ndarray:
    """0/1 or 0/255 values as a bool array (True = missing); a DataError for anything else."""
    levels = np.unique(values)
    for white in (1, 255):
        if set(levels.tolist()) <= {0, white}:
            return values == white
    raise DataError(
        f"mask {where} is not binary: it holds {len(levels)} levels "
        f"({', '.join(str(v) for v in levels[:6].tolist())}...); masks hold only 0 (kept) and "
        "255 or 1 (missing): save them as PNG (JPEG blurs the edges) or threshold them"
    )


def load_mask_set(path: Path, size: int) -> Tensor:
    """Masks (N, 1, size, size) bool from a folder of PNGs (white = missing) or an `.npz` whose
    `masks` is (N, 1, H, W) uint8/bool (1 = missing)."""
    if path.is_dir():
        files = list_images(path, "mask")
        masks = []
        for file in files:
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert("L"))
            except _PIL_ERRORS as err:
                raise DataError(f"cannot read mask {file}: {err}; fix or remove it") from err
            if pixels.shape != (size, size):
                raise DataError(
                    f"mask {file} is {pixels.shape[1]}x{pixels.shape[0]} but the images it "
                    f"masks are {size}x{size} (data.crop_size); masks must match the images"
                )
            masks.append(binary_levels(pixels, str(file)))
        return torch.from_numpy(np.stack(masks)[:, None])
    try:
        with np.load(path) as archive:
            masks = archive["masks"]
    except KeyError as err:
        raise DataError(f"mask set {path} has no 'masks' array; store (N, 1, H, W) in it") from err
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read mask set {path}: {err}; is it an .npz file?") from err
    if masks.dtype not in (np.uint8, np.bool_) or masks.ndim != 4 or masks.shape[1] != 1:
        raise DataError(
            f"mask set {path}: 'masks' is {masks.dtype} of shape {masks.shape}; it must be "
            "uint8 or bool of shape (N, 1, H, W)"
        )
    if masks.shape[2:] != (size, size):
        raise DataError(
            f"mask set {path} holds {masks.shape[3]}x{masks.shape[2]} masks but the images it "
            f"masks are {size}x{size} (data.crop_size); masks must match the images"
        )
    return torch.from_numpy(binary_levels(masks.astype(np.uint8), f"set {path}"))


class Masks:
    """Where an item's mask comes from: a loaded set (training: a random one; eval: mask
    i % N) or a generator (training: the item's stream; eval: a stream fixed per index)."""

    def __init__(self, kind: str, size: int, hole_size: int, mask_set: Tensor | None) -> None:
        self.kind = kind
        self.size = size
        self.hole_size = hole_size
        self.mask_set = mask_set

    def draw(self, index: int, generator: torch.Generator, train: bool) -> Tensor:
        if self.mask_set is not None:
            choice = randint(len(self.mask_set), generator) if train else index
            return self.mask_set[choice % len(self.mask_set)].float()
        if self.kind == "centre":
            return centre_mask(self.size, self.hole_size)
        return free_form_mask(self.size, generator)


def clean_crop(file: Path, crop_size: int, train: bool, generator) -> Tensor:
    """The clean image of a restoration item: a random crop and flip in training, the centre
    crop in evaluation."""
    image = load_rgb(file)
    if train:
        return random_crop_flip({"image": image}, crop_size, generator)["image"]
    return center_crop(image, crop_size)


class InpaintingImages(Dataset):
    """Items {"source": target with the hole at 0, "target", "mask": 1 = missing}."""

    def __init__(self, files: list[Path], crop_size: int, masks: Masks, train: bool) -> None:
        self.files = files
        self.crop_size = crop_size
        self.masks = masks
        self.train = train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        target = clean_crop(self.files[index], self.crop_size, self.train, generator)
        mask = self.masks.draw(index, generator, self.train)
        return {"source": target * (1 - mask), "target": target.contiguous(), "mask": mask}


def mask_option(option: str, value: str) -> str | Path:
    """'centre', 'free_form', or the path of a mask folder or `.npz` file."""
    if value in GENERATED_MASKS:
        return value
    path = Path(os.path.expanduser(str(value))).resolve()
    if not (path.is_dir() or path.suffix == ".npz" and path.is_file()):
        state = "does not exist" if not path.exists() else "is neither a folder nor an .npz file"
        raise DataError(
            f"data.{option}={value!r}: {path} {state}; accepted: 'centre', 'free_form', a folder "
            "of mask PNGs (white = missing) or an .npz holding 'masks' (N, 1, H, W)"
        )
    return path


class InpaintingFolderDataModule(TranslationDataModule):
    """Clean images with holes. `masks` (training) and `test_masks` (null: as `masks`) are
    'centre' (a `hole_size` square, default half the side), 'free_form' (generated strokes) or
    a mask set. Training takes a random `crop_size` crop and flip, the test split the centre."""

    task = "inpainting"

    def __init__(
        self,
        root: str,
        masks: str = "free_form",
        test_masks: str | None = None,
        crop_size: int = 256,
        hole_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("crop_size", crop_size, 1)
        # half the side by default: MMagic's 128 at 256, the context encoder's 64 at 128
        hole_size = crop_size // 2 if hole_size is None else hole_size
        check_int("hole_size", hole_size, 1)
        if hole_size > crop_size:
            raise DataError(f"hole_size={hole_size} is larger than crop_size={crop_size}")
        self.name = "inpainting_folder"
        self.root = resolve_root("root", root, FOLDER_LAYOUT)
        self.files = folder_splits(self.root, "inpainting")
        self.splits = ("train", "test")
        self.mask_options = {
            "train": mask_option("masks", masks),
            "test": mask_option("test_masks", masks if test_masks is None else test_masks),
        }
        self.crop_size = crop_size
        self.hole_size = hole_size
        self.sample_shape = self.source_shape = (3, crop_size, crop_size)
        self.settings: dict[str, Any] = {
            "crop_size": crop_size,
            "masks": {s: str(m) for s, m in self.mask_options.items()},
        }
        if "centre" in self.mask_options.values():
            self.settings["hole_size"] = hole_size
        self.sources = [(self.root, self.files["train"] + self.files["test"])]
        for option in self.mask_options.values():
            if isinstance(option, Path):
                files = find_images(option) if option.is_dir() else [option]
                self.sources.append((option if option.is_dir() else option.parent, files))

    def _load(self, split: str) -> InpaintingImages:
        files = self.files[split]
        check_decodable(self.root / split, files, f"inpainting {split}")
        check_sizes(files, self.crop_size)
        option = self.mask_options[split]
        mask_set = load_mask_set(option, self.crop_size) if isinstance(option, Path) else None
        kind = "set" if mask_set is not None else str(option)
        masks = Masks(kind, self.crop_size, self.hole_size, mask_set)
        return InpaintingImages(files, self.crop_size, masks, split == "train")


class NoisyImages(Dataset):
    """Items {"source": target + N(0, sigma), "target"}; sigma fixed, or drawn per item from
    `sigma_range` (blind denoising)."""

    def __init__(
        self, files: list[Path], crop_size: int, sigma_range: tuple[float, float], train: bool
    ) -> None:
        self.files = files
        self.crop_size = crop_size
        self.sigma_range = sigma_range
        self.train = train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        target = clean_crop(self.files[index], self.crop_size, self.train, generator)
        sigma = uniform(*self.sigma_range, generator) / PIXEL_LEVELS
        noise = torch.randn(target.shape, generator=generator) * sigma
        # Not clipped to [-1, 1]: clipping would bias the noise in dark and bright regions
        # (its mean would no longer be 0), and the Gaussian-denoising literature adds it unclipped.
        return {"source": target + noise, "target": target.contiguous()}


class DenoisingFolderDataModule(TranslationDataModule):
    """Clean images plus Gaussian noise of `sigma` (on the 0..255 scale), or of a sigma drawn
    per item from `sigma_range` (blind denoising; set `sigma: null` then)."""

    task = "denoise"

    def __init__(
        self,
        root: str,
        sigma: float | None = 25.0,
        sigma_range: list[float] | None = None,
        crop_size: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("crop_size", crop_size, 1)
        self.sigma_range = noise_levels(sigma, sigma_range)
        self.name = "denoise_folder"
        self.root = resolve_root("root", root, FOLDER_LAYOUT)
        self.files = folder_splits(self.root, "denoise")
        self.splits = ("train", "test")
        self.crop_size = crop_size
        self.sample_shape = self.source_shape = (3, crop_size, crop_size)
        self.settings = {"crop_size": crop_size, "sigma_range": list(self.sigma_range)}
        self.sources = [(self.root, self.files["train"] + self.files["test"])]

    def _load(self, split: str) -> NoisyImages:
        files = self.files[split]
        check_decodable(self.root / split, files, f"denoise {split}")
        check_sizes(files, self.crop_size)
        return NoisyImages(files, self.crop_size, self.sigma_range, split == "train")


def noise_levels(sigma: Any, sigma_range: Any) -> tuple[float, float]:
    """(low, high) noise sigma on 0..255 from exactly one of `sigma` and `sigma_range`."""
    if (sigma is None) == (sigma_range is None):
        raise DataError(
            f"set exactly one of data.sigma (got {sigma!r}) and data.sigma_range (got "
            f"{sigma_range!r}): a fixed noise sigma on 0..255 (e.g. 25), or a range [low, high] "
            "for blind denoising (e.g. [0, 55], with data.sigma=null)"
        )
    levels = [sigma, sigma] if sigma is not None else list(sigma_range)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels)
    if len(levels) != 2 or not numbers or not 0 <= levels[0] <= levels[1]:
        option = "sigma" if sigma is not None else "sigma_range"
        value = sigma if sigma is not None else sigma_range
        raise DataError(
            f"data.{option}={value!r} is not a noise level: give a sigma >= 0 on 0..255, or "
            "sigma_range as [low, high] with 0 <= low <= high"
        )
    return float(levels[0]), float(levels[1])

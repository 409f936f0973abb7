"""A folder of image files, optionally one subfolder per class."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps
from pytorch_lightning.utilities import rank_zero_only
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
# PIL's modes for 16-bit grayscale; older Pillow opens a 16-bit grayscale PNG as "I" instead
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
CHECK_VERSION = 1  # of `decode_problem`: a change invalidates the recorded checks
SHOWN_BAD_FILES = 5  # messages name this many broken files, then give the count

log = logging.getLogger("ganlab")


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


def is_sixteen_bit(image: Image.Image, file_format: str | None) -> bool:
    return image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and file_format == "PNG")


def to_eight_bit(image: Image.Image, file_format: str | None) -> Image.Image:
    """16-bit grayscale scaled to 8-bit "L" (65535 -> 255, v * 257 -> v, as an 8-bit save of the
    same picture); other images unchanged. PIL's own conversion clips at 255: all white."""
    if not is_sixteen_bit(image, file_format):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.round(pixels / 257).astype(np.uint8))  # 2D uint8: mode L


def decode_problem(path: Path) -> str | None:
    """Why `path` cannot be trained on, or None. Decodes every pixel: a truncated file has an
    intact header and fails only when its pixels are read."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "F") and not is_sixteen_bit(image, image.format):
                samples = "floating-point" if image.mode == "F" else "32-bit or signed integer"
                return (
                    f"PIL mode {image.mode} ({samples} samples) is not supported; "
                    "save it as 8-bit, or 16-bit unsigned grayscale"
                )
    except _PIL_ERRORS as err:
        return str(err) or type(err).__name__
    return None


def contents_fingerprint(root: Path, files: list[Path]) -> str:
    """A hash of each file's name (relative to `root`), size and modification time: it changes
    when a file is added, removed, renamed or rewritten, and costs one `stat` per file."""
    digest = hashlib.sha256()
    for file in files:
        try:
            stat = file.stat()
        except OSError as err:
            raise DataError(
                f"image_folder: cannot read {file} ({err.strerror}); was it removed while "
                "ganlab ran? Restore it or restart"
            ) from err
        name = file.relative_to(root).as_posix()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def find_bad_files(root: Path, files: list[Path]) -> dict[str, str]:
    """{path: why} of the files that do not decode. Every file is decoded once, in threads (PIL
    releases the GIL while decoding); the result is cached under the folder's contents, so an
    unchanged folder costs a `stat` per file the next time."""
    from ganlab.metrics.extractors import cache_dir  # here: ganlab.metrics imports ganlab.data

    key = f"{CHECK_VERSION}\0{root}\0{contents_fingerprint(root, files)}\0{PIL.__version__}"
    records = cache_dir() / "checked_image_folders"
    record = records / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    try:
        bad = json.loads(record.read_text())["bad_files"]
        if isinstance(bad, dict):
            return bad
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not checked yet, or an unreadable record: check again
    with ThreadPoolExecutor() as pool:
        problems = list(pool.map(decode_problem, files))
    bad = {str(file): why for file, why in zip(files, problems, strict=True) if why}
    try:
        records.mkdir(parents=True, exist_ok=True)
        # write then rename: runs checking the same folder at once never read half a record
        with tempfile.NamedTemporaryFile("w", dir=records, suffix=".tmp", delete=False) as out:
            json.dump({"root": str(root), "bad_files": bad}, out)
        os.replace(out.name, record)
    except OSError as err:  # a read-only cache only costs the check again next time
        log.debug("could not record the check of %s: %s", root, err)
    return bad


def describe(bad: dict[str, str]) -> str:
    """The first few broken files with their reasons, on one line."""
    shown = "; ".join(f"{path} ({why})" for path, why in list(bad.items())[:SHOWN_BAD_FILES])
    more = len(bad) - SHOWN_BAD_FILES
    return shown + (f"; and {more} more" if more > 0 else "")


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
                upright = ImageOps.exif_transpose(image)
                image = self.transform(to_eight_bit(upright, image.format))
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
        skip_bad_files: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("resolution", resolution, 1)
        check_choice("channels", channels, (1, 3))
        check_choice("skip_bad_files", skip_bad_files, (False, True))
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
        self.skip_bad_files = skip_bad_files
        self.num_classes = check_num_classes(num_classes, true_classes, f"image_folder {root}")
        self.sample_shape = (channels, resolution, resolution)

    def identity(self) -> dict[str, Any]:
        # the contents, read now: reference statistics of an edited folder are not reused
        contents = contents_fingerprint(Path(self.path), self.files)
        return {
            **super().identity(),
            "path": self.path,
            "contents": contents,
            "center_crop": self.center_crop,
        }

    def _load(self, split: str) -> ImageFiles:
        # every file decoded now, not hours into training
        bad = find_bad_files(Path(self.path), self.files)
        counted = f"{len(bad)} of {len(self.files)} files under {self.path}"
        if bad and not self.skip_bad_files:
            raise DataError(
                f"image_folder: {counted} cannot be decoded as images; fix or remove them, or "
                f"set data.skip_bad_files=true to train without them: {describe(bad)}"
            )
        kept = [i for i, file in enumerate(self.files) if str(file) not in bad]
        if not kept:
            raise DataError(
                f"image_folder: none of the {len(self.files)} files under {self.path} can be "
                f"decoded as images: {describe(bad)}"
            )
        if bad:
            rank_zero_only(log.warning)(
                "image_folder: skipping %s that cannot be decoded (data.skip_bad_files=true): %s",
                counted,
                describe(bad),
            )
        transform = image_transform(self.resolution, self.channels, self.center_crop)
        return ImageFiles([self.files[i] for i in kept], [self.labels[i] for i in kept], transform)

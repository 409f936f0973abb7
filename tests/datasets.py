"""Small dataset files in the exact on-disk layouts torchvision and the image-to-image loaders
read, written by tests."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TRAIN_LABELS = [i % 10 for i in range(20)]
TEST_LABELS = [9 - i for i in range(10)]


def stripes(label: int, size: int, unit: int) -> np.ndarray:
    """Black square with a white band of `unit * (label + 1)` columns: the label is readable
    back from the mean brightness after resizing, so image/label pairing can be checked."""
    image = np.zeros((size, size), np.uint8)
    image[:, : unit * (label + 1)] = 255
    return image


def allow_test_files(monkeypatch: pytest.MonkeyPatch, module: object) -> None:
    """torchvision MD5-checks CIFAR-10 and CelebA files against the official release, which no
    test-written file can match. Only that comparison is dropped (a file must still exist);
    everything else — finding, parsing, decoding, transforming — is torchvision's real code.
    `test_*_md5_mismatch_is_a_data_error` runs the unpatched check on the same files."""
    monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: big-endian magic 0x08 (uint8) << 8 | ndim (2051 images, 2049 labels), dims, data
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, labels in (("train", TRAIN_LABELS), ("t10k", TEST_LABELS)):
        write_idx(
            raw / f"{prefix}-images-idx3-ubyte", np.stack([stripes(y, 28, 2) for y in labels])
        )
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array(labels))


def cifar_rows(labels: list[int]) -> np.ndarray:
    # white band on a pure red background, channel-planar rows of 3072 like the real files
    images = []
    for label in labels:
        band = stripes(label, 32, 3)
        images.append(np.stack([np.full_like(band, 255), band, band]))
    return np.stack(images).reshape(len(labels), 3072)


def write_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(5):
        part = TRAIN_LABELS[4 * i : 4 * i + 4]
        entry = {"data": cifar_rows(part), "labels": part}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(entry))
    entry = {"data": cifar_rows(TEST_LABELS), "labels": TEST_LABELS}
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


# ---- image-to-image layouts (pix2pix A|B, CycleGAN, DIV2K/Set5, CLWD, image folders) ----------


def noise_image(height: int, width: int, seed: int) -> np.ndarray:
    """Random RGB pixels: every crop position and flip gives a different picture."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def split_seed(split: str, index: int) -> int:
    return {"train": 0, "val": 100, "test": 200}[split] + index


def write_aligned(root: Path, splits=("train", "test"), count: int = 4, size: int = 16) -> Path:
    """pix2pix A|B files; B = A inverted, so the pair relation shows whether crops agree."""
    for split in splits:
        for i in range(count):
            a = noise_image(size, size, seed=split_seed(split, i))
            save(root / split / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    return root


def write_unaligned(root: Path, sizes: dict[str, int] | None = None) -> Path:
    sizes = sizes or {"trainA": 3, "trainB": 5, "testA": 2, "testB": 2}
    for folder, count in sizes.items():
        for i in range(count):
            save(root / folder / f"{i}.png", noise_image(16, 16, seed=len(folder) * 10 + i))
    return root


def write_sr_pair(hr_path: Path, lr_path: Path, seed: int, size: int = 32, scale: int = 4):
    """LR = the HR image box-averaged over scale x scale blocks."""
    hr = noise_image(size, size, seed)
    save(hr_path, hr)
    save(lr_path, np.asarray(Image.fromarray(hr).reduce(scale)))


def write_clwd(root: Path, size: int = 16, count: int = 3) -> Path:
    """Watermarked = watermark-free with the masked pixels set to white (PNG: lossless)."""
    for split in ("train", "test"):
        for i in range(count):
            free = noise_image(size, size, seed=i)
            mask = np.random.default_rng(50 + i).random((size, size)) < 0.3
            marked = np.where(mask[..., None], 255, free).astype(np.uint8)
            save(root / split / "Watermark_free_image" / f"{i}.png", free)
            save(root / split / "Watermarked_image" / f"{i}.png", marked)
            grey = np.where(mask, 200, 30).astype(np.uint8)  # 8-bit greys: above half = watermark
            save(root / split / "Mask" / f"{i}.png", grey)
    return root


def write_clean(root: Path, count: int = 4, size: int = 16) -> Path:
    for split in ("train", "test"):
        for i in range(count):
            save(root / split / f"{i}.png", noise_image(size, size, seed=i + (split == "test")))
    return root

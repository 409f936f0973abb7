"""Small dataset files in the exact on-disk layout torchvision reads, written by tests."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

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

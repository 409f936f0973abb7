"""torchvision datamodules, read by torchvision's own code from small files the tests write in
the exact on-disk layout of each dataset. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.celeba
import torchvision.datasets.cifar
from PIL import Image

from ganlab.data import DataError, TorchvisionDataModule
from tests.datasets import (
    TEST_LABELS,
    TRAIN_LABELS,
    allow_test_files,
    write_cifar,
    write_mnist,
)


def decode(image: torch.Tensor, size: int, unit: int) -> int:
    """Inverse of `stripes` for one (H, W) channel in [-1, 1]."""
    return round(float((image.mean() + 1) / 2) * size / unit - 1)


def check_batch(batch: dict[str, torch.Tensor], dm: TorchvisionDataModule) -> None:
    assert set(batch) == {"image", "label"}
    image, label = batch["image"], batch["label"]
    assert image.dtype == torch.float32 and label.dtype == torch.int64
    assert image.shape == (dm.batch_size, *dm.sample_shape) and label.shape == (dm.batch_size,)
    assert image.min() >= -1 and image.max() <= 1
    assert image.min() < -0.5 and image.max() > 0.5


# ---------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_mnist_family(tmp_path: Path, name: str, folder: str) -> None:
    write_mnist(tmp_path, folder)
    dm = TorchvisionDataModule(name, str(tmp_path), resolution=32, channels=1, batch_size=5)
    assert (dm.name, dm.data_key, dm.num_classes, dm.sample_shape) == (
        name,
        "image",
        10,
        (1, 32, 32),
    )
    dm.setup("fit")
    seen = []
    for batch in dm.train_dataloader():
        check_batch(batch, dm)
        for image, label in zip(batch["image"], batch["label"], strict=True):
            assert decode(image[0], 28, 2) == label
        seen += batch["label"].tolist()
    assert sorted(seen) == sorted(TRAIN_LABELS)
    test = dm.real_dataset("test")
    assert [int(test[i]["label"]) for i in range(len(test))] == TEST_LABELS


def test_mnist_to_three_channels(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    dm = TorchvisionDataModule("mnist", str(tmp_path), resolution=16, channels=3, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, dm)
    assert batch["image"].shape == (4, 3, 16, 16)
    torch.testing.assert_close(batch["image"][:, 0], batch["image"][:, 2])


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    allow_test_files(monkeypatch, torchvision.datasets.cifar)
    dm = TorchvisionDataModule("cifar10", str(tmp_path), channels=3, num_classes=10, batch_size=4)
    assert dm.sample_shape == (3, 32, 32)
    seen = []
    for batch in dm.train_dataloader():
        check_batch(batch, dm)
        image = batch["image"]
        assert torch.all(image[:, 0] == 1)  # red channel is saturated everywhere
        for green, label in zip(image[:, 1], batch["label"], strict=True):
            assert decode(green, 32, 3) == label
        seen += batch["label"].tolist()
    assert sorted(seen) == sorted(TRAIN_LABELS)
    test = dm.real_dataset("test")
    assert [int(test[i]["label"]) for i in range(len(test))] == TEST_LABELS


def test_cifar10_to_gray_uses_luminance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    allow_test_files(monkeypatch, torchvision.datasets.cifar)
    dm = TorchvisionDataModule("cifar10", str(tmp_path), channels=1, resolution=16, batch_size=4)
    image = next(iter(dm.train_dataloader()))["image"]
    assert image.shape == (4, 1, 16, 16)
    # pure red -> L = 0.299 * 255 = 76 (not 255 as the red channel, not 85 as a plain mean)
    assert image.min().item() == pytest.approx(76 / 255 * 2 - 1, abs=1e-6)
    assert image.max().item() == 1


def test_cifar10_md5_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    dm = TorchvisionDataModule("cifar10", str(tmp_path))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message and "MD5" in message
    assert "data.download=true" in message


# ---------------------------------------------------------------- CelebA


# 4 train, 2 valid, 2 test (torchvision fails on a split of exactly one image)
CELEBA_PARTITION = [0, 0, 0, 0, 1, 1, 2, 2]


def write_celeba(root: Path) -> None:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_PARTITION))]
    # 178x218 like the aligned faces; 20 green rows top and bottom that the 178 crop removes
    image = np.zeros((218, 178, 3), np.uint8)
    image[:20] = image[-20:] = (0, 255, 0)
    image[20:-20, 89:] = 255
    for name in names:
        Image.fromarray(image).save(folder / "img_align_celeba" / name, quality=100, subsampling=0)

    def table(filename: str, header: str | None, row: str) -> None:
        values = CELEBA_PARTITION if row == "partition" else [row] * len(names)
        lines = [f"{n} {v}" for n, v in zip(names, values, strict=True)]
        if header is not None:
            lines = [str(len(names)), header, *lines]
        (folder / filename).write_text("\n".join(lines) + "\n")

    table("list_eval_partition.txt", None, "partition")
    table("identity_CelebA.txt", None, "7")
    table("list_attr_celeba.txt", "Smiling Young", "1 -1")
    table("list_bbox_celeba.txt", "image_id x_1 y_1 width height", "95 71 226 313")
    table("list_landmarks_align_celeba.txt", "lefteye_x lefteye_y", "69 109")


def test_celeba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_celeba(tmp_path)
    allow_test_files(monkeypatch, torchvision.datasets.celeba)
    dm = TorchvisionDataModule("celeba", str(tmp_path), resolution=64, channels=3, batch_size=2)
    assert dm.num_classes is None and dm.sample_shape == (3, 64, 64)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    for batch in batches:
        check_batch(batch, dm)
        image = batch["image"]
        assert torch.all(batch["label"] == 0)  # unconditional
        assert (image[:, 1] - image[:, 0]).abs().max() < 0.1  # green border cropped away
        assert image[..., :28].max() < -0.9 and image[..., 36:].min() > 0.9  # black | white
    sizes = {s: len(dm.real_dataset(s)) for s in ("train", "valid", "test", "all")}
    assert sizes == {"train": 4, "valid": 2, "test": 2, "all": 8}


def test_celeba_md5_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    with pytest.raises(DataError, match=r"celeba not found \(or it failed torchvision's MD5"):
        TorchvisionDataModule("celeba", str(tmp_path)).setup()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion_mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("celeba", "celeba"),
    ],
)
def test_missing_data_names_path_and_fix(tmp_path: Path, name: str, folder: str) -> None:
    dm = TorchvisionDataModule(name, str(tmp_path))  # construction reads nothing
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert message.startswith(f"{name} not found")
    assert str(tmp_path / folder) in message
    assert "data.download=true" in message and "data.root" in message
    assert not any(tmp_path.iterdir())  # and nothing was fetched or created


def test_option_errors(tmp_path: Path) -> None:
    root = str(tmp_path)
    with pytest.raises(DataError, match=r"dataset='svhn' .*'mnist', 'fashion_mnist', 'cifar10'"):
        TorchvisionDataModule("svhn", root)
    with pytest.raises(DataError, match=r"num_classes=10 .*celeba, which has no class labels"):
        TorchvisionDataModule("celeba", root, num_classes=10)
    with pytest.raises(DataError, match=r"num_classes=100 .*cifar10, which has 10 classes"):
        TorchvisionDataModule("cifar10", root, num_classes=100)
    with pytest.raises(DataError, match=r"mnist split='valid'.*'train', 'test'"):
        TorchvisionDataModule("mnist", root, split="valid")
    with pytest.raises(DataError, match=r"channels=4 .*1, 3"):
        TorchvisionDataModule("cifar10", root, channels=4)

"""torchvision datasets (MNIST, Fashion-MNIST, CIFAR-10, CelebA) behind one datamodule."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from ganlab.data.base import (
    DataError,
    GANDataModule,
    check_choice,
    check_int,
    check_num_classes,
    image_transform,
)

_MNIST_FILES = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte"
)


@dataclass(frozen=True)
class _Spec:
    cls: type
    folder: str  # where torchvision looks, relative to root
    files: str  # what it needs there (for the missing-data message)
    splits: tuple[str, ...]
    num_classes: int | None


SPECS: dict[str, _Spec] = {
    "mnist": _Spec(datasets.MNIST, "MNIST/raw", _MNIST_FILES, ("train", "test"), 10),
    "fashion_mnist": _Spec(
        datasets.FashionMNIST, "FashionMNIST/raw", _MNIST_FILES, ("train", "test"), 10
    ),
    "cifar10": _Spec(
        datasets.CIFAR10,
        "cifar-10-batches-py",
        "data_batch_1 ... data_batch_5, test_batch, batches.meta",
        ("train", "test"),
        10,
    ),
    # 178x218 aligned faces: the central square is the usual GAN preprocessing's 178 crop
    "celeba": _Spec(
        datasets.CelebA,
        "celeba",
        "img_align_celeba/, list_eval_partition.txt, identity_CelebA.txt, list_attr_celeba.txt, "
        "list_bbox_celeba.txt, list_landmarks_align_celeba.txt",
        ("train", "valid", "test", "all"),
        None,
    ),
}


class LabeledImages(Dataset):
    """A torchvision (image, target) dataset as dicts; a missing target (CelebA) becomes 0."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, target = self.base[index]
        label = 0 if target is None else int(target)
        return {"image": image, "label": torch.tensor(label, dtype=torch.int64)}


class TorchvisionDataModule(GANDataModule):
    """One of `SPECS` read by torchvision from `root`, served as [-1, 1] images.

    Data is read lazily (setup / first loader), so building the module never touches disk.
    """

    def __init__(
        self,
        dataset: str,
        root: str,
        download: bool = False,
        resolution: int = 32,
        channels: int = 3,
        num_classes: int | None = None,
        split: str = "train",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_choice("dataset", dataset, tuple(SPECS))
        spec = SPECS[dataset]
        check_int("resolution", resolution, 1)
        check_choice("channels", channels, (1, 3))
        check_choice(f"{dataset} split", split, spec.splits)
        self.name = dataset
        self.data_key = "image"
        self.splits = spec.splits
        self.root = os.path.expanduser(str(root))
        self.download = download
        self.resolution = resolution
        self.channels = channels
        self.num_classes = check_num_classes(num_classes, spec.num_classes, dataset)
        self.sample_shape = (channels, resolution, resolution)
        self.split = self.train_split = split
        self._spec = spec

    def prepare_data(self) -> None:
        # Lightning runs this once per node before setup: the place to download
        if self.download:
            self._load(self.split)

    def _load(self, split: str) -> LabeledImages:
        spec = self._spec
        transform = image_transform(self.resolution, self.channels)
        try:
            if self.name == "celeba":
                base = spec.cls(
                    self.root,
                    split=split,
                    target_type=[],
                    transform=transform,
                    download=self.download,
                )
            else:
                base = spec.cls(
                    self.root, train=split == "train", transform=transform, download=self.download
                )
        except RuntimeError as err:
            # torchvision's "Dataset not found or corrupted" (existence and MD5 checks)
            if not str(err).startswith("Dataset"):
                raise
            where = os.path.abspath(os.path.join(self.root, spec.folder))
            raise DataError(
                f"{self.name} not found (or it failed torchvision's MD5 check) at {where}: "
                f"torchvision needs {spec.files} there. Set data.download=true to fetch it, "
                f"or point data.root (now {self.root!r}) at the folder that holds "
                f"{spec.folder.split('/')[0]}/"
            ) from err
        return LabeledImages(base)

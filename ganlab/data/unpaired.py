"""Unpaired data in CycleGAN's layout: `root/trainA, trainB, testA, testB` (valA/valB optional)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data.base import DataError
from ganlab.data.translation import (
    TranslationDataModule,
    check_decodable,
    check_load_and_crop,
    item_generator,
    list_images,
    load_rgb,
    randint,
    random_crop_flip,
    require_folder,
    resolve_root,
)

UNALIGNED_LAYOUT = "root/{trainA,trainB,testA,testB}/*.jpg|png (valA/valB optional)"


class UnalignedImages(Dataset):
    """Item i: A file i (cycling) and a B file: in training drawn at random from the item's own
    stream, each side with its own crop and flip; in eval the B file of the same name when every
    A file has one (then also "source"/"target" for paired scores), else B file i (cycling)."""

    def __init__(
        self,
        files_a: list[Path],
        files_b: list[Path],
        load_size: int,
        crop_size: int,
        train: bool,
    ) -> None:
        self.files_a = files_a
        self.train = train
        by_stem = {f.stem: f for f in files_b}
        self.paired = not train and all(f.stem in by_stem for f in files_a)
        self.files_b = [by_stem[f.stem] for f in files_a] if self.paired else files_b
        self.load_size = load_size if train else crop_size  # eval: no jitter
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.files_a) if self.paired else max(len(self.files_a), len(self.files_b))

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        a = load_rgb(self.files_a[index % len(self.files_a)], self.load_size)
        if not self.train:
            b = load_rgb(self.files_b[index % len(self.files_b)], self.load_size)
            return {"a": a, "b": b, "source": a, "target": b} if self.paired else {"a": a, "b": b}
        b = load_rgb(self.files_b[randint(len(self.files_b), generator)], self.load_size)
        return {
            "a": random_crop_flip({"a": a}, self.crop_size, generator)["a"],
            "b": random_crop_flip({"b": b}, self.crop_size, generator)["b"],
        }


class UnalignedDataModule(TranslationDataModule):
    """Two image domains without pairs (horse2zebra, monet2photo, ...). Images are resized to
    `load_size` (bicubic), then cropped to `crop_size` at random and flipped in training;
    eval splits are resized to `crop_size`."""

    task = "unpaired"
    data_key = "b"

    def __init__(
        self,
        root: str,
        load_size: int = 286,
        crop_size: int = 256,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_load_and_crop(load_size, crop_size)
        self.name = "unaligned"
        self.root = resolve_root("root", root, UNALIGNED_LAYOUT)
        if (self.root / "train" / "A").is_dir() and not (self.root / "trainA").is_dir():
            raise DataError(
                f"{self.root} has the train/A, train/B layout; ganlab reads CycleGAN's own "
                "layout: rename train/A to trainA, train/B to trainB, test/A to testA and "
                "test/B to testB"
            )
        self.splits = ("train", "test")
        if (self.root / "valA").is_dir() and (self.root / "valB").is_dir():
            self.splits += ("val",)
        self.files: dict[str, dict[str, list[Path]]] = {}
        for split in self.splits:
            self.files[split] = {}
            for side in "AB":
                folder = require_folder(self.root, split + side, UNALIGNED_LAYOUT)
                self.files[split][side] = list_images(folder, f"domain {side} ({split}{side})")
        self.load_size = load_size
        self.crop_size = crop_size
        self.sample_shape = self.source_shape = (3, crop_size, crop_size)
        self.settings = {"load_size": load_size, "crop_size": crop_size}
        every = [f for s in self.splits for side in "AB" for f in self.files[s][side]]
        self.sources = [(self.root, every)]

    def _load(self, split: str) -> UnalignedImages:
        files = self.files[split]
        for side in "AB":
            check_decodable(self.root / f"{split}{side}", files[side], f"unaligned {split}{side}")
        return UnalignedImages(
            files["A"], files["B"], self.load_size, self.crop_size, split == "train"
        )

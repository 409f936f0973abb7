"""Super-resolution pairs: DIV2K-style HR and LR folders for training, Set5/Set14-style
`GTmod12` + `LRbicx<scale>` folders for testing, files matched by name."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data.base import DataError, check_int
from ganlab.data.translation import (
    TranslationDataModule,
    check_crop,
    check_decodable,
    coin,
    crop,
    image_size,
    item_generator,
    list_images,
    load_rgb,
    match_by_stem,
    randint,
    require_folder,
    resolve_root,
)

TRAIN_LAYOUT = (
    "hr_dir/<name>.png (DIV2K/DIV2K_train_HR/0001.png) and lr_dir/<name>x<scale>.png or "
    "<name>.png (DIV2K/DIV2K_train_LR_bicubic/X4/0001x4.png)"
)
TEST_LAYOUT = "<test dir>/GTmod12/<name>.png and <test dir>/LRbicx<scale>/<name>.png (Set5, Set14)"


class SuperResolutionPairs(Dataset):
    """(LR, HR) files. Training: a random `gt_size` HR crop and the LR crop under it, then one
    horizontal flip, vertical flip and transposition (BasicSR's rot90) for both; eval: whole
    images (of several sizes in Set5/Set14: batch them one at a time)."""

    def __init__(
        self, hr_files: list[Path], lr_files: list[Path], scale: int, gt_size: int, train: bool
    ) -> None:
        self.hr_files = hr_files
        self.lr_files = lr_files
        self.scale = scale
        self.gt_size = gt_size
        self.train = train

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        hr, lr = load_rgb(self.hr_files[index]), load_rgb(self.lr_files[index])
        if not self.train:
            return {"source": lr, "target": hr}
        lr_size = self.gt_size // self.scale
        top = randint(lr.shape[-2] - lr_size + 1, generator)
        left = randint(lr.shape[-1] - lr_size + 1, generator)
        lr = crop(lr, top, left, lr_size)
        hr = crop(hr, top * self.scale, left * self.scale, self.gt_size)
        for flip in (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-1, -2)):
            if coin(generator):
                lr, hr = flip(lr), flip(hr)
        return {"source": lr.contiguous(), "target": hr.contiguous()}


class SuperResolutionDataModule(TranslationDataModule):
    """x`scale` super-resolution. Splits: "train" (hr_dir + lr_dir), "test" (the first of
    `test_dirs`) and each test dir by its folder name ("Set5", "Set14")."""

    task = "sr"

    def __init__(
        self,
        hr_dir: str,
        lr_dir: str,
        test_dirs: list[str] | str,
        scale: int = 4,
        gt_size: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_int("scale", scale, 2)
        check_int("gt_size", gt_size, 1)
        if gt_size % scale:
            raise DataError(
                f"gt_size={gt_size} is not a multiple of scale={scale}, so no LR crop lies "
                f"under the HR crop; use e.g. gt_size={gt_size // scale * scale or scale}"
            )
        self.name = "div2k"
        self.scale = scale
        self.gt_size = gt_size
        hr_root = resolve_root("hr_dir", hr_dir, TRAIN_LAYOUT)
        lr_root = resolve_root("lr_dir", lr_dir, TRAIN_LAYOUT)
        hr_files = list_images(hr_root, "HR")
        lr_files = match_by_stem(
            hr_files, list_images(lr_root, "LR"), "LR image", (f"x{scale}", "")
        )
        self.pairs = {"train": (hr_files, lr_files)}
        self.folders = {"train": (hr_root, lr_root)}
        self.sources = [(hr_root, hr_files), (lr_root, lr_files)]
        test_dirs = [test_dirs] if isinstance(test_dirs, str) else list(test_dirs or [])
        if not test_dirs:
            raise DataError(
                f"data.test_dirs is empty; give at least one folder laid out as {TEST_LAYOUT}"
            )
        for position, test_dir in enumerate(test_dirs):
            root = resolve_root("test_dirs", test_dir, TEST_LAYOUT)
            gt_folder = require_folder(root, "GTmod12", TEST_LAYOUT)
            gt_files = list_images(gt_folder, "GTmod12")
            lr_folder = require_folder(root, f"LRbicx{scale}", TEST_LAYOUT)
            lr_test = match_by_stem(
                gt_files, list_images(lr_folder, "LR"), "LR image", ("", f"x{scale}")
            )
            names = ["test", root.name] if position == 0 else [root.name]
            for name in names:
                if name in self.pairs and self.pairs[name][0] != gt_files:
                    raise DataError(
                        f"data.test_dirs has two folders named {name!r}; each test set is a "
                        "split named after its folder, so give them distinct names"
                    )
                self.pairs[name] = (gt_files, lr_test)
                self.folders[name] = (gt_folder, lr_folder)
            self.sources.append((root, gt_files + lr_test))
        self.splits = tuple(self.pairs)
        self.sample_shape = (3, gt_size, gt_size)
        self.source_shape = (3, gt_size // scale, gt_size // scale)
        self.settings = {"scale": scale, "gt_size": gt_size}

    def _load(self, split: str) -> SuperResolutionPairs:
        hr_files, lr_files = self.pairs[split]
        for folder, files in zip(self.folders[split], self.pairs[split], strict=True):
            check_decodable(folder, files, f"div2k {split}")
        for hr, lr in zip(hr_files, lr_files, strict=True):
            (hr_width, hr_height), (lr_width, lr_height) = image_size(hr), image_size(lr)
            if (hr_width, hr_height) != (self.scale * lr_width, self.scale * lr_height):
                raise DataError(
                    f"div2k: {hr} is {hr_width}x{hr_height} but its LR image {lr} is "
                    f"{lr_width}x{lr_height}; at scale={self.scale} the HR image must be "
                    f"{self.scale * lr_width}x{self.scale * lr_height}"
                )
            if split == "train":
                check_crop(self.gt_size, hr_height, hr_width, hr, "gt_size")
        return SuperResolutionPairs(hr_files, lr_files, self.scale, self.gt_size, split == "train")

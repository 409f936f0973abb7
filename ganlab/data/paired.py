"""Paired image-to-image data in the layouts the public sets ship in: pix2pix's side-by-side
A|B files, and CLWD's watermarked / watermark-free / mask folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ganlab.data import degradations
from ganlab.data.base import DataError, check_choice, check_int
from ganlab.data.translation import (
    TranslationDataModule,
    center_crop,
    check_crop,
    check_decodable,
    check_load_and_crop,
    image_size,
    item_generator,
    list_images,
    load_rgb,
    match_by_stem,
    open_image,
    randint,
    random_crop_flip,
    require_folder,
    resolve_root,
    subfolders,
    to_tensor,
)

ALIGNED_LAYOUT = "root/{train,val,test}/*.jpg|png, each file A and B side by side (A left, W = 2H)"
CLWD_LAYOUT = (
    "root/{train,test}/{Watermarked_image,Watermark_free_image,Mask}/<id>.<ext>, matched by id"
)
CLWD_FOLDERS = {"source": "Watermarked_image", "target": "Watermark_free_image", "mask": "Mask"}
# data.recolour (turn_and_recolour): shares of negatives and of tinted greys, the tint's range
NEGATIVE_SHARE = 0.25
GREY_SHARE = 0.2
GREY_TINT = (0.6, 1.3)


class AlignedPairs(Dataset):
    """A|B files split at the middle; each half resized to `load_size` (bicubic), then in
    training one random `crop_size` crop and horizontal flip shared by A and B."""

    def __init__(
        self, files: list[Path], b_to_a: bool, load_size: int, crop_size: int, train: bool
    ) -> None:
        self.files = files
        self.b_to_a = b_to_a
        self.load_size = load_size if train else crop_size  # eval: no jitter, as pix2pix tests
        self.crop_size = crop_size
        self.train = train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        image = open_image(self.files[index], "RGB")
        width, height = image.size
        left = image.crop((0, 0, width // 2, height))
        right = image.crop((width // 2, 0, width, height))
        a, b = (right, left) if self.b_to_a else (left, right)
        size = (self.load_size, self.load_size)
        pair = {
            "source": to_tensor(a.resize(size, Image.Resampling.BICUBIC)),
            "target": to_tensor(b.resize(size, Image.Resampling.BICUBIC)),
        }
        if self.train:
            pair = random_crop_flip(pair, self.crop_size, generator)
        return pair


class AlignedPairsDataModule(TranslationDataModule):
    """pix2pix's aligned sets (facades, maps, edges2shoes, ...): `root/{train,val,test}/*`, each
    file A|B side by side. `direction` picks which half is the source."""

    task = "paired"

    def __init__(
        self,
        root: str,
        direction: str = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        check_choice("direction", direction, ("AtoB", "BtoA"))
        check_load_and_crop(load_size, crop_size)
        self.name = "aligned"
        self.root = resolve_root("root", root, ALIGNED_LAYOUT)
        require_folder(self.root, "train", ALIGNED_LAYOUT)
        self.splits = tuple(s for s in ("train", "val", "test") if (self.root / s).is_dir())
        held_out = [s for s in ("test", "val") if s in self.splits]
        if not held_out:
            raise DataError(
                f"{self.root} has no test or val folder to evaluate on; folders found: "
                f"{', '.join(subfolders(self.root))}; expected layout: {ALIGNED_LAYOUT}"
            )
        self.eval_split = held_out[0]
        self.files = {s: list_images(self.root / s, f"aligned {s}") for s in self.splits}
        self.direction = direction
        self.load_size = load_size
        self.crop_size = crop_size
        self.sample_shape = self.source_shape = (3, crop_size, crop_size)
        self.settings = {"direction": direction, "load_size": load_size, "crop_size": crop_size}
        self.sources = [(self.root, [f for s in self.splits for f in self.files[s]])]

    def _load(self, split: str) -> AlignedPairs:
        files = self.files[split]
        check_decodable(self.root / split, files, f"aligned {split}")
        for file in files:
            width, height = image_size(file)
            if width != 2 * height:
                raise DataError(
                    f"aligned: {file} is {width}x{height}, not one A|B pair: each file must "
                    f"hold A and B side by side, A on the left (width = 2 x height, here "
                    f"{2 * height}x{height})"
                )
        return AlignedPairs(
            files, self.direction == "BtoA", self.load_size, self.crop_size, split == "train"
        )


class WatermarkPairs(Dataset):
    """(watermarked, watermark-free, mask) files; training: one crop and flip for all three;
    eval: the centre crop (or the whole image without `crop_size`). `fresh_watermarks`: in
    training, the watermark file is replaced by a new watermark drawn over the watermark-free
    image from the item's seed (see `fresh_watermark`); `recolour`: training items are then
    turned and recoloured (see `turn_and_recolour`)."""

    def __init__(
        self,
        items: list[dict[str, Path]],
        crop_size: int | None,
        train: bool,
        fresh_watermarks: bool = False,
        recolour: bool = False,
    ) -> None:
        self.items = items
        self.crop_size = crop_size
        self.train = train
        self.fresh_watermarks = fresh_watermarks and train
        self.recolour = recolour and train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key) -> dict[str, Tensor]:
        index, generator = item_generator(key)
        files = self.items[index]
        if self.fresh_watermarks:
            item = fresh_watermark(open_image(files["target"], "RGB"), generator)
        else:
            item = {
                "source": load_rgb(files["source"]),
                "target": load_rgb(files["target"]),
                # CLWD's masks are 8-bit greys: above half is watermarked (1)
                "mask": (to_tensor(open_image(files["mask"], "L")) > 0).float(),
            }
        if self.train:
            item = random_crop_flip(item, self.crop_size, generator)
            return turn_and_recolour(item, generator) if self.recolour else item
        if self.crop_size is not None:
            item = {k: center_crop(v, self.crop_size) for k, v in item.items()}
        return item


def turn_and_recolour(item: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
    """One random quarter turn for the three images, and one colour change for the watermarked
    and the clean image: their channels in a random order, then with `NEGATIVE_SHARE` the
    negative, or with `GREY_SHARE` a tinted grey. Each change is affine per pixel, so the
    watermarked image stays an alpha blend of the clean one (with a changed colour): a few
    training photos look like many more."""
    turns = randint(4, generator)
    item = {key: image.rot90(turns, (-2, -1)) for key, image in item.items()}
    order = torch.randperm(3, generator=generator)
    draw = float(torch.rand((), generator=generator))
    tint = torch.empty(3, 1, 1).uniform_(*GREY_TINT, generator=generator)

    def recolour(image: Tensor) -> Tensor:
        image = image[order]
        if draw < NEGATIVE_SHARE:
            return -image
        if draw < NEGATIVE_SHARE + GREY_SHARE:
            grey = (image.mean(0, keepdim=True) + 1) / 2
            return (grey * tint).clamp(0, 1) * 2 - 1
        return image

    return {**item, "source": recolour(item["source"]), "target": recolour(item["target"])}


def fresh_watermark(clean: Image.Image, generator: torch.Generator) -> dict[str, Tensor]:
    """A new watermark over `clean`, drawn as the photo sets draw their training watermarks
    (`ganlab.data.degradations`, "varied": training words and logos, random strings, procedural
    shapes); its randomness comes from `generator`, so a seeded draw is reproducible."""
    rng = np.random.default_rng(int(torch.randint(2**62, (), generator=generator)))
    marked, mask = degradations.add_watermark(np.asarray(clean), rng, varied=True)
    return {
        "source": to_tensor(Image.fromarray(marked)),
        "target": to_tensor(clean),
        "mask": torch.from_numpy(mask)[None].float(),
    }


class WatermarkPairsDataModule(TranslationDataModule):
    """CLWD (and sets written in its layout): `root/{train,test}/Watermarked_image/<id>`,
    `Watermark_free_image/<id>`, `Mask/<id>`, matched by id (the file name without extension).
    source = watermarked, target = watermark-free, mask = 1 where the watermark is.

    `fresh_watermarks`: every training draw gets a new watermark over the watermark-free image
    (seeded by the sampler, so reproducible and resumable), instead of the one in the files: a
    model meets as many watermarks as it takes steps, where the files hold one per image.
    `recolour`: training items are turned and recoloured (`turn_and_recolour`). The test split is
    always the files as they are."""

    task = "watermark"

    def __init__(
        self,
        root: str,
        crop_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int | None = 0,
        drop_last: bool = True,
        fresh_watermarks: bool = False,  # a new watermark at every training draw
        recolour: bool = False,  # training items turned and recoloured
    ) -> None:
        super().__init__(batch_size, num_workers, seed, drop_last)
        if crop_size is not None:
            check_int("crop_size", crop_size, 1)
        for name, value in (("fresh_watermarks", fresh_watermarks), ("recolour", recolour)):
            if not isinstance(value, bool):
                raise DataError(f"{name}={value!r} must be true or false")
        self.fresh_watermarks = fresh_watermarks
        self.recolour = recolour
        self.name = "clwd"
        self.root = resolve_root("root", root, CLWD_LAYOUT)
        self.splits = ("train", "test")
        self.items: dict[str, list[dict[str, Path]]] = {}
        for split in self.splits:
            folders = {
                key: require_folder(self.root, f"{split}/{folder}", CLWD_LAYOUT)
                for key, folder in CLWD_FOLDERS.items()
            }
            found = {key: list_images(folder, folder.name) for key, folder in folders.items()}
            targets = match_by_stem(found["source"], found["target"], "watermark-free image")
            masks = match_by_stem(found["source"], found["mask"], "mask")
            self.items[split] = [
                {"source": s, "target": t, "mask": m}
                for s, t, m in zip(found["source"], targets, masks, strict=True)
            ]
        self.crop_size = crop_size
        if crop_size is None:  # trained on whole images: their size is the sample size
            width, height = image_size(self.items["train"][0]["target"])
        else:
            width = height = crop_size
        self.sample_shape = self.source_shape = (3, height, width)
        self.settings = {
            "crop_size": crop_size,
            "fresh_watermarks": fresh_watermarks,
            "recolour": recolour,
        }
        files = [f for s in self.splits for item in self.items[s] for f in item.values()]
        self.sources = [(self.root, sorted(files))]

    def _load(self, split: str) -> WatermarkPairs:
        items = self.items[split]
        files = [f for item in items for f in item.values()]
        check_decodable(self.root / split, files, f"clwd {split}")
        whole = self.sample_shape[1:]
        for item in items:
            width, height = image_size(item["source"])
            for key, what in (("target", "its watermark-free image"), ("mask", "its mask")):
                other = image_size(item[key])
                if other != (width, height):
                    raise DataError(
                        f"clwd: {item['source']} is {width}x{height} but {what} {item[key]} is "
                        f"{other[0]}x{other[1]}; a pair must have one size"
                    )
            if self.crop_size is not None:
                check_crop(self.crop_size, height, width, item["source"], "crop_size")
            elif (height, width) != whole:
                raise DataError(
                    f"clwd: {item['source']} is {width}x{height}, unlike "
                    f"{self.items['train'][0]['target']} ({whole[1]}x{whole[0]}); images of "
                    "several sizes need data.crop_size to batch them"
                )
        train = split == "train"
        return WatermarkPairs(items, self.crop_size, train, self.fresh_watermarks, self.recolour)

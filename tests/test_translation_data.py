"""Image-to-image datamodules on tiny files the tests write in each dataset's own layout."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from ganlab.data import (
    AlignedPairsDataModule,
    DataError,
    DenoisingFolderDataModule,
    InpaintingFolderDataModule,
    SuperResolutionDataModule,
    UnalignedDataModule,
    WatermarkPairsDataModule,
)
from ganlab.data.translation import TRANSLATION_TASKS
from tests.conftest import compose_config
from tests.datasets import (
    noise_image,
    save,
    split_seed,
    write_aligned,
    write_clean,
    write_clwd,
    write_sr_pair,
    write_unaligned,
)

LEVEL = 1 / 127.5  # one 8-bit step on [-1, 1]


def levels(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) as the loaders' (C, H, W) in [-1, 1]."""
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1


def first_batch(dm) -> dict[str, torch.Tensor]:
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


# ---- writers: each lays out a tiny dataset exactly as the real one is laid out ----------------


def write_sr(root: Path) -> dict[str, Path]:
    for i in range(4):
        lr_name = f"{i:04d}x4.png" if i % 2 else f"{i:04d}.png"  # both namings are accepted
        write_sr_pair(root / "HR" / f"{i:04d}.png", root / "LR" / "X4" / lr_name, seed=i)
    for i, name in enumerate(["baby", "bird"]):
        gt, lr = (
            root / "Set5" / "GTmod12" / f"{name}.png",
            root / "Set5" / "LRbicx4" / f"{name}.png",
        )
        write_sr_pair(gt, lr, seed=100 + i, size=24 + 12 * i)  # test images differ in size
    return {"hr_dir": root / "HR", "lr_dir": root / "LR" / "X4", "test_dirs": [root / "Set5"]}


def sr_options(root: Path) -> dict:
    written = write_sr(root)
    return {
        "hr_dir": str(written["hr_dir"]),
        "lr_dir": str(written["lr_dir"]),
        "test_dirs": [str(d) for d in written["test_dirs"]],
    }


BUILDERS: dict[str, Callable[[Path], object]] = {
    "aligned": lambda root: AlignedPairsDataModule(
        str(write_aligned(root)), load_size=16, crop_size=12, batch_size=2
    ),
    "unaligned": lambda root: UnalignedDataModule(
        str(write_unaligned(root)), load_size=16, crop_size=12, batch_size=2
    ),
    "div2k": lambda root: SuperResolutionDataModule(**sr_options(root), gt_size=16, batch_size=2),
    "clwd": lambda root: WatermarkPairsDataModule(
        str(write_clwd(root)), crop_size=12, batch_size=2
    ),
    "inpainting_folder": lambda root: InpaintingFolderDataModule(
        str(write_clean(root)), masks="free_form", crop_size=16, batch_size=2
    ),
    "denoise_folder": lambda root: DenoisingFolderDataModule(
        str(write_clean(root)), crop_size=12, batch_size=2
    ),
}


# ---- every datamodule ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_trains_through_a_dataloader(tmp_path: Path, name: str) -> None:
    dm = BUILDERS[name](tmp_path)
    assert dm.task in TRANSLATION_TASKS and dm.name == name
    assert dm.eval_split in dm.splits and "train" in dm.splits
    batch = first_batch(dm)
    images = {k: v for k, v in batch.items() if k != "mask"}
    assert batch[dm.data_key].shape == (2, *dm.sample_shape)
    if "source" in batch:
        assert batch["source"].shape == (2, *dm.source_shape)
    for tensor in images.values():
        assert tensor.dtype == torch.float32
        assert tensor.max() - tensor.min() > 0.3  # pictures, not blanks
    if name != "denoise_folder":  # noisy sources may leave [-1, 1] (by design, see NoisyImages)
        assert all(t.min() >= -1 and t.max() <= 1 for t in images.values())
    if "mask" in batch:
        assert batch["mask"].shape == (2, 1, *dm.sample_shape[1:])
        assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    json.dumps(dm.identity())  # the key of reference caches: plain values only
    eval_item = dm.real_dataset(dm.eval_split)[0]
    assert eval_item[dm.data_key].shape[0] == 3


CONFIGS = {
    "aligned": lambda root: [f"data.root={write_aligned(root)}", "data.crop_size=12"],
    "unaligned": lambda root: [f"data.root={write_unaligned(root)}", "data.crop_size=12"],
    "div2k": lambda root: (
        [f"data.{key}={value}".replace("'", "") for key, value in sr_options(root).items()]
        + ["data.gt_size=16"]
    ),
    "clwd": lambda root: [f"data.root={write_clwd(root)}"],
    "inpainting_folder": lambda root: [f"data.root={write_clean(root)}", "data.crop_size=16"],
    "denoise_folder": lambda root: [f"data.root={write_clean(root)}", "data.crop_size=16"],
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_builds_the_datamodule(tmp_path: Path, name: str) -> None:
    overrides = [f"data={name}", *CONFIGS[name](tmp_path / "data"), "data.batch_size=2"]
    cfg = compose_config(overrides, tmp_path / "run")
    dm = instantiate(cfg.data)
    assert dm.name == name and dm.seed == cfg.seed
    batch = first_batch(dm)
    assert batch[dm.data_key].shape == (2, *dm.sample_shape)


@pytest.mark.parametrize("name", ["aligned", "div2k", "inpainting_folder"])
def test_epochs_reproducible_and_resumable(tmp_path: Path, name: str) -> None:
    """Crops and draws come from the datamodule's saved generator, in the main process: the
    same seed or a restored state gives the same batches, for any number of workers."""
    dm = BUILDERS[name](tmp_path / "a")
    state = dm.state_dict()
    first = first_batch(dm)
    second = next(iter(dm.train_dataloader()))
    assert not torch.equal(first["target"], second["target"])  # a new epoch, new crops
    dm.load_state_dict(state)
    torch.testing.assert_close(first_batch(dm), first, rtol=0, atol=0)
    dm.num_workers = 2
    dm.load_state_dict(state)
    torch.testing.assert_close(first_batch(dm), first, rtol=0, atol=0)


def test_batch_larger_than_the_data(tmp_path: Path) -> None:
    dm = DenoisingFolderDataModule(str(write_clean(tmp_path)), crop_size=16, batch_size=5)
    with pytest.raises(DataError, match=r"has 4 samples, fewer than batch_size=5 with drop_last"):
        dm.train_dataloader()


def test_identity_follows_contents(tmp_path: Path) -> None:
    root = write_aligned(tmp_path)
    dm = AlignedPairsDataModule(str(root), load_size=16, crop_size=12)
    identity = dm.identity()
    assert identity["dataset"] == "aligned" and identity["direction"] == "AtoB"
    assert identity["task"] == "paired" and identity["source_shape"] == [3, 12, 12]
    assert AlignedPairsDataModule(str(root), load_size=16, crop_size=12).identity() == identity
    assert AlignedPairsDataModule(str(root), "BtoA", 16, 12).identity() != identity
    save(root / "test" / "new.png", np.zeros((16, 32, 3), np.uint8))
    edited = AlignedPairsDataModule(str(root), load_size=16, crop_size=12)
    assert edited.identity()["folders"] != identity["folders"]


# ---- aligned (pix2pix A|B) ----------------------------------------------------------------------


def test_aligned_crop_and_flip_shared_by_a_and_b(tmp_path: Path) -> None:
    dm = AlignedPairsDataModule(str(write_aligned(tmp_path)), load_size=16, crop_size=10)
    train = dm.real_dataset("train")
    originals = [levels(noise_image(16, 16, seed=split_seed("train", i))) for i in range(4)]
    positions = set()
    for seed in range(12):
        item = train[(seed % 4, seed)]
        assert item["source"].shape == item["target"].shape == (3, 10, 10)
        torch.testing.assert_close(item["source"] + item["target"], torch.zeros(3, 10, 10))
        a = originals[seed % 4]
        # the source is a crop of A, maybe mirrored: find where
        found = {
            (flip, top, left)
            for flip in (False, True)
            for top in range(7)
            for left in range(7)
            if torch.equal(
                (a.flip(-1) if flip else a)[:, top : top + 10, left : left + 10], item["source"]
            )
        }
        assert len(found) == 1
        positions |= found
    assert len(positions) > 3  # crops and flips vary between draws


def test_aligned_direction_and_eval(tmp_path: Path) -> None:
    root = write_aligned(tmp_path, splits=("train", "val"))
    a_to_b = AlignedPairsDataModule(str(root), load_size=16, crop_size=16)
    b_to_a = AlignedPairsDataModule(str(root), direction="BtoA", load_size=16, crop_size=16)
    assert a_to_b.splits == ("train", "val") and a_to_b.eval_split == "val"
    item, swapped = a_to_b.real_dataset("val")[1], b_to_a.real_dataset("val")[1]
    torch.testing.assert_close(item["source"], swapped["target"])
    torch.testing.assert_close(item["target"], swapped["source"])
    a = levels(noise_image(16, 16, seed=split_seed("val", 1)))
    torch.testing.assert_close(item["source"], a)  # eval: no crop, no flip
    # eval resizes to crop_size, no jitter: the same tensor every time
    small = AlignedPairsDataModule(str(root), load_size=16, crop_size=8).real_dataset("val")
    assert small[1]["source"].shape == (3, 8, 8)
    torch.testing.assert_close(small[1]["source"], small[1]["source"])
    torch.testing.assert_close(
        small[1]["source"] + small[1]["target"], torch.zeros(3, 8, 8), atol=2 * LEVEL, rtol=0
    )


def test_aligned_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; set it to a folder laid out as root/"):
        AlignedPairsDataModule(str(tmp_path / "nowhere"))
    (tmp_path / "trainA").mkdir()
    with pytest.raises(DataError, match=r"train is missing; folders found in .*: trainA"):
        AlignedPairsDataModule(str(tmp_path))
    root = write_aligned(tmp_path / "pairs", splits=("train",))
    with pytest.raises(
        DataError, match="no test or val folder to evaluate on; folders found: train"
    ):
        AlignedPairsDataModule(str(root), load_size=16, crop_size=12)
    write_aligned(root, splits=("test",))
    with pytest.raises(DataError, match="crop_size=20 is larger than load_size=16"):
        AlignedPairsDataModule(str(root), load_size=16, crop_size=20)
    save(root / "train" / "half.png", noise_image(16, 16, 0))  # only one image, no B half
    dm = AlignedPairsDataModule(str(root), load_size=16, crop_size=12)
    with pytest.raises(
        DataError, match=r"half.png is 16x16, not one A\|B pair.*\(width = 2 x height, here 32x16\)"
    ):
        dm.setup("fit")
    (root / "test" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"aligned test: 1 of 4 files .* cannot be decoded"):
        AlignedPairsDataModule(str(root), load_size=16, crop_size=12).real_dataset("test")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "test").mkdir()
    with pytest.raises(DataError, match=r"aligned train folder .* contains no images"):
        AlignedPairsDataModule(str(empty))


# ---- unaligned (CycleGAN) -----------------------------------------------------------------------


def test_unaligned_items(tmp_path: Path) -> None:
    root = write_unaligned(tmp_path)
    dm = UnalignedDataModule(str(root), load_size=16, crop_size=12, batch_size=2)
    assert (dm.data_key, dm.task, dm.splits, dm.eval_split) == (
        "b",
        "unpaired",
        ("train", "test"),
        "test",
    )
    train = dm.real_dataset("train")
    assert len(train) == 5  # max(|A|, |B|)
    drawn = set()
    for seed in range(20):
        item = train[(0, seed)]
        assert set(item) == {"a", "b"} and item["b"].shape == (3, 12, 12)
        drawn.add(item["b"].sum().item())
    assert len(drawn) > 3  # b drawn at random (crops and flips change the sum only slightly)
    test = UnalignedDataModule(str(root), load_size=16, crop_size=16).real_dataset("test")
    item = test[1]  # testA and testB share names: the hidden pairs are scored
    assert set(item) == {"a", "b", "source", "target"}
    torch.testing.assert_close(item["target"], levels(noise_image(16, 16, seed=51)))
    (root / "testB" / "1.png").rename(root / "testB" / "other.png")
    unnamed = UnalignedDataModule(str(root), load_size=16, crop_size=12).real_dataset("test")
    assert set(unnamed[1]) == {"a", "b"}


def test_unaligned_errors(tmp_path: Path) -> None:
    pg = tmp_path / "pg"
    for folder in ("train/A", "train/B", "test/A", "test/B"):
        (pg / folder).mkdir(parents=True)
    with pytest.raises(DataError, match="rename train/A to trainA, train/B to trainB"):
        UnalignedDataModule(str(pg))
    root = write_unaligned(tmp_path / "u", {"trainA": 2, "testA": 1, "testB": 1})
    with pytest.raises(
        DataError, match=r"trainB is missing; folders found in .*: testA, testB, trainA"
    ):
        UnalignedDataModule(str(root), load_size=16, crop_size=12)
    (root / "trainB").mkdir()
    with pytest.raises(DataError, match=r"domain B \(trainB\) folder .*trainB contains no images"):
        UnalignedDataModule(str(root), load_size=16, crop_size=12)
    with pytest.raises(DataError, match="crop_size=256 is larger than load_size=128"):
        UnalignedDataModule(str(root), load_size=128, crop_size=256)


# ---- super-resolution (DIV2K, Set5) -------------------------------------------------------------


def test_sr_crops_correspond(tmp_path: Path) -> None:
    dm = SuperResolutionDataModule(**sr_options(tmp_path), gt_size=16)
    assert dm.splits == ("train", "test", "Set5") and dm.eval_split == "test"
    assert dm.sample_shape == (3, 16, 16) and dm.source_shape == (3, 4, 4)
    train = dm.real_dataset("train")
    for seed in range(8):
        item = train[(seed % 4, seed)]
        assert item["source"].shape == (3, 4, 4) and item["target"].shape == (3, 16, 16)
        # the LR crop is the box-downsampled HR crop, after the same flips and rotation
        torch.testing.assert_close(
            F.avg_pool2d(item["target"][None], 4)[0], item["source"], atol=LEVEL, rtol=0
        )
    in_order = [batch["target"].shape[-1] for batch in dm.eval_dataloader(batch_size=1)]
    assert in_order == [24, 36]  # eval: whole images, unjittered, in file order
    test = dm.real_dataset("Set5")
    assert [test[i]["target"].shape[-1] for i in range(2)] == [24, 36]  # whole images
    torch.testing.assert_close(test[1]["target"], dm.real_dataset("test")[1]["target"])


def test_sr_errors(tmp_path: Path) -> None:
    options = sr_options(tmp_path)
    with pytest.raises(
        DataError, match="gt_size=18 is not a multiple of scale=4, .* use e.g. gt_size=16"
    ):
        SuperResolutionDataModule(**options, gt_size=18)
    with pytest.raises(DataError, match=r"gt_size=64 is larger than .*0000.png \(32x32\)"):
        SuperResolutionDataModule(**options, gt_size=64).setup("fit")
    with pytest.raises(DataError, match="data.test_dirs is empty"):
        SuperResolutionDataModule(**{**options, "test_dirs": []})
    with pytest.raises(DataError, match=r"GTmod12 is missing; folders found in .*HR: none"):
        SuperResolutionDataModule(**{**options, "test_dirs": [options["hr_dir"]]})
    save(tmp_path / "LR" / "X4" / "0001x4.png", noise_image(7, 8, 0))
    with pytest.raises(
        DataError,
        match=r"0001.png is 32x32 but its LR image .*0001x4.png is 8x7; "
        r"at scale=4 the HR image must be 32x28",
    ):
        SuperResolutionDataModule(**options, gt_size=16).setup("fit")
    os.remove(tmp_path / "LR" / "X4" / "0001x4.png")
    with pytest.raises(
        DataError, match=r"no LR image .*<name>x4.<ext> or <name>.<ext>\): 0001.png"
    ):
        SuperResolutionDataModule(**options)
    write_sr_pair(tmp_path / "HR" / "0001.png", tmp_path / "LR" / "X4" / "0001x4.png", seed=1)
    for parent in ("one", "two"):
        write_sr_pair(
            tmp_path / parent / "Set5/GTmod12/a.png", tmp_path / parent / "Set5/LRbicx4/a.png", 0
        )
    twins = [str(tmp_path / "one" / "Set5"), str(tmp_path / "two" / "Set5")]
    with pytest.raises(DataError, match="data.test_dirs has two folders named 'Set5'"):
        SuperResolutionDataModule(**{**options, "test_dirs": twins})
    os.remove(tmp_path / "Set5" / "LRbicx4" / "bird.png")
    with pytest.raises(DataError, match=r"1 of 2 files have no LR image in .*LRbicx4 .*: bird.png"):
        SuperResolutionDataModule(**options)


# ---- watermark (CLWD) ---------------------------------------------------------------------------


def test_clwd_source_target_mask_aligned(tmp_path: Path) -> None:
    dm = WatermarkPairsDataModule(str(write_clwd(tmp_path)), crop_size=10)
    assert dm.task == "watermark" and dm.sample_shape == (3, 10, 10)
    train = dm.real_dataset("train")
    for seed in range(6):
        item = train[(seed % 3, seed)]
        mask = item["mask"].bool().expand(3, -1, -1)
        assert 0 < mask.float().mean() < 1
        expected = torch.where(mask, torch.ones(()), item["target"])
        torch.testing.assert_close(item["source"], expected)  # same crop and flip for all three
    whole = WatermarkPairsDataModule(str(tmp_path))
    assert whole.sample_shape == (3, 16, 16)
    assert whole.real_dataset("test")[2]["mask"].shape == (1, 16, 16)


def test_clwd_errors(tmp_path: Path) -> None:
    root = write_clwd(tmp_path / "clwd")
    os.remove(root / "test" / "Mask" / "2.png")
    with pytest.raises(DataError, match=r"1 of 3 files have no mask in .*test/Mask .*: 2.png"):
        WatermarkPairsDataModule(str(root))
    save(root / "test" / "Mask" / "2.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(
        DataError, match=r"2.png is 16x16 but its mask .*2.png is 16x12; a pair must have one size"
    ):
        WatermarkPairsDataModule(str(root)).real_dataset("test")
    save(root / "test" / "Mask" / "2.png", np.zeros((16, 16), np.uint8))
    save(root / "test" / "Watermark_free_image" / "2.png", noise_image(20, 16, 0))
    with pytest.raises(DataError, match=r"but its watermark-free image .* is 16x20"):
        WatermarkPairsDataModule(str(root)).real_dataset("test")
    with pytest.raises(DataError, match="crop_size=20 is larger than .*0.png \\(16x16\\)"):
        WatermarkPairsDataModule(str(root), crop_size=20).setup("fit")
    for folder in ("Watermarked_image", "Watermark_free_image", "Mask"):
        save(root / "train" / folder / "big.png", np.zeros((24, 24, 3), np.uint8))
    with pytest.raises(
        DataError, match="big.png is 24x24, unlike .* images of several sizes need data.crop_size"
    ):
        WatermarkPairsDataModule(str(root)).setup("fit")
    (tmp_path / "bare" / "train" / "Watermarked_image").mkdir(parents=True)
    with pytest.raises(
        DataError,
        match=r"Watermark_free_image is missing; folders found in .*train: Watermarked_image",
    ):
        WatermarkPairsDataModule(str(tmp_path / "bare"))


# ---- inpainting ---------------------------------------------------------------------------------


def write_mask_pngs(folder: Path, count: int, size: int) -> list[np.ndarray]:
    masks = [np.random.default_rng(i).random((size, size)) < 0.4 for i in range(count)]
    for i, mask in enumerate(masks):
        save(folder / f"{i}.png", (mask * 255).astype(np.uint8))
    return masks


def test_inpainting_generated_masks(tmp_path: Path) -> None:
    root = write_clean(tmp_path)
    centre = InpaintingFolderDataModule(str(root), masks="centre", crop_size=16, hole_size=6)
    item = centre.real_dataset("test")[0]
    assert item["mask"].sum() == 36 and item["mask"][0, 5:11, 5:11].all()
    torch.testing.assert_close(item["source"], item["target"] * (1 - item["mask"]))
    assert item["source"][:, 8, 8].eq(0).all()  # the hole is 0, the network also gets the mask
    free = InpaintingFolderDataModule(str(root), masks="free_form", crop_size=16, seed=1)
    other_run = InpaintingFolderDataModule(str(root), masks="free_form", crop_size=16, seed=2)
    test, train = free.real_dataset("test"), free.real_dataset("train")
    fixed = [test[i]["mask"] for i in range(4)]
    for i in range(4):  # test masks: fixed per image, the same in every run
        torch.testing.assert_close(test[i]["mask"], fixed[i])
        torch.testing.assert_close(other_run.real_dataset("test")[i]["mask"], fixed[i])
        assert 0 < fixed[i].mean() < 1
    assert not torch.equal(fixed[0], fixed[1])
    drawn = [train[(0, seed)]["mask"] for seed in range(4)]  # train: a new mask per draw
    assert all(not torch.equal(drawn[0], m) for m in drawn[1:])
    # MMagic's area rule: strokes cover 15-65 % of the image
    coverage = torch.stack([train[(0, seed)]["mask"].mean() for seed in range(20)])
    assert coverage.min() > 0.15 and coverage.max() < 0.65


def test_inpainting_mask_sets(tmp_path: Path) -> None:
    root = write_clean(tmp_path / "images")
    test_masks = write_mask_pngs(tmp_path / "test_masks", 3, 16)
    train_set = (np.random.default_rng(9).random((5, 1, 16, 16)) < 0.5).astype(np.uint8)
    np.savez(tmp_path / "masks_train.npz", masks=train_set)
    dm = InpaintingFolderDataModule(
        str(root),
        masks=str(tmp_path / "masks_train.npz"),
        test_masks=str(tmp_path / "test_masks"),
        crop_size=16,
    )
    test = dm.real_dataset("test")
    for i in range(4):  # test image i gets mask i % 3, always
        assert np.array_equal(test[i]["mask"][0].bool().numpy(), test_masks[i % 3])
    train = dm.real_dataset("train")
    for seed in range(5):
        mask = train[(0, seed)]["mask"].numpy().astype(np.uint8)
        assert any(np.array_equal(mask, m) for m in train_set)
    identity = dm.identity()
    assert identity["masks"]["test"].endswith("test_masks") and len(identity["folders"]) == 3


def test_inpainting_mask_errors(tmp_path: Path) -> None:
    root = str(write_clean(tmp_path / "images"))
    with pytest.raises(
        DataError,
        match=r"data.masks='boxes': .* does not exist; accepted: 'centre', 'free_form', a folder",
    ):
        InpaintingFolderDataModule(root, masks="boxes", crop_size=16)
    write_mask_pngs(tmp_path / "small", 2, 8)
    with pytest.raises(DataError, match=r"mask .*0.png is 8x8 but the images it masks are 16x16"):
        InpaintingFolderDataModule(root, masks=str(tmp_path / "small"), crop_size=16).setup()
    grey = tmp_path / "grey"
    save(grey / "0.png", np.full((16, 16), 128, np.uint8))
    with pytest.raises(DataError, match=r"mask .*0.png is not binary: it holds 1 levels \(128"):
        InpaintingFolderDataModule(root, masks=str(grey), crop_size=16).setup()
    save(grey / "0.png", np.zeros((16, 16), np.uint8))
    (grey / "1.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"cannot read mask .*1.png"):
        InpaintingFolderDataModule(root, masks=str(grey), crop_size=16).setup()
    npz = tmp_path / "m.npz"
    np.savez(npz, holes=np.zeros((2, 1, 16, 16), np.uint8))
    with pytest.raises(DataError, match="has no 'masks' array"):
        InpaintingFolderDataModule(root, masks=str(npz), crop_size=16).setup()
    np.savez(npz, masks=np.zeros((2, 16, 16), np.float32))
    with pytest.raises(
        DataError, match=r"'masks' is float32 of shape \(2, 16, 16\); it must be uint8 or bool"
    ):
        InpaintingFolderDataModule(root, masks=str(npz), crop_size=16).setup()
    np.savez(npz, masks=np.zeros((2, 1, 8, 8), np.uint8))
    with pytest.raises(DataError, match="holds 8x8 masks but the images it masks are 16x16"):
        InpaintingFolderDataModule(root, masks=str(npz), crop_size=16).setup()
    npz.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read mask set .*m.npz"):
        InpaintingFolderDataModule(root, masks=str(npz), crop_size=16).setup()
    with pytest.raises(DataError, match=r"crop_size=32 is larger than .*0.png \(16x16\)"):
        InpaintingFolderDataModule(root, masks="centre", crop_size=32, hole_size=8).setup()
    with pytest.raises(DataError, match="hole_size=20 is larger than crop_size=16"):
        InpaintingFolderDataModule(root, masks="centre", crop_size=16, hole_size=20)


# ---- denoising ----------------------------------------------------------------------------------


def test_denoise_noise(tmp_path: Path) -> None:
    root = tmp_path / "white"
    for split in ("train", "test"):
        for i in range(3):
            save(root / split / f"{i}.png", np.full((32, 32, 3), 255, np.uint8))
    dm = DenoisingFolderDataModule(str(root), sigma=25, crop_size=32)
    item = dm.real_dataset("test")[0]
    noise = item["source"] - item["target"]
    assert abs(noise.std().item() * 127.5 - 25) < 2 and abs(noise.mean().item()) < 0.02
    assert item["source"].max() > 1.1  # not clipped: the noise keeps its zero mean
    torch.testing.assert_close(dm.real_dataset("test")[0], item)  # fixed per test index
    other_run = DenoisingFolderDataModule(str(root), sigma=25, crop_size=32, seed=7)
    torch.testing.assert_close(other_run.real_dataset("test")[0], item)
    train = dm.real_dataset("train")
    assert not torch.equal(train[(0, 1)]["source"], train[(0, 2)]["source"])
    blind = DenoisingFolderDataModule(str(root), sigma=None, sigma_range=[0, 55], crop_size=32)
    stds = [
        (t["source"] - t["target"]).std().item() * 127.5
        for t in map(blind.real_dataset("train").__getitem__, [(0, s) for s in range(8)])
    ]
    assert max(stds) - min(stds) > 10 and max(stds) < 57
    assert blind.identity()["sigma_range"] == [0.0, 55.0]


@pytest.mark.parametrize(
    ("sigma", "sigma_range", "message"),
    [
        (25, [0, 55], "set exactly one of data.sigma"),
        (None, None, "set exactly one of data.sigma"),
        (-5, None, r"data.sigma=-5 is not a noise level"),
        (None, [55, 0], r"data.sigma_range=\[55, 0\] is not a noise level"),
        (None, [10], r"data.sigma_range=\[10\] is not a noise level"),
        ("25", None, "data.sigma='25' is not a noise level"),
    ],
)
def test_denoise_option_errors(tmp_path: Path, sigma, sigma_range, message: str) -> None:
    with pytest.raises(DataError, match=message):
        DenoisingFolderDataModule(str(write_clean(tmp_path)), sigma=sigma, sigma_range=sigma_range)


def test_folder_missing_split(tmp_path: Path) -> None:
    write_clean(tmp_path)
    for file in (tmp_path / "test").iterdir():
        file.unlink()
    (tmp_path / "test").rmdir()
    with pytest.raises(
        DataError,
        match=r"test is missing; folders found in .*: train; expected layout: root/\{train,test\}",
    ):
        DenoisingFolderDataModule(str(tmp_path))


def test_clwd_fresh_watermarks_redraw_each_training_draw(tmp_path: Path) -> None:
    root = write_clwd(tmp_path, size=48)
    files = WatermarkPairsDataModule(str(root)).real_dataset("train")
    fresh_dm = WatermarkPairsDataModule(str(root), fresh_watermarks=True)
    assert fresh_dm.settings["fresh_watermarks"] is True
    fresh = fresh_dm.real_dataset("train")
    first, again, other = fresh[(0, 7)], fresh[(0, 7)], fresh[(0, 8)]
    for key in ("source", "target", "mask"):  # a draw is a function of its seed
        torch.testing.assert_close(first[key], again[key])
    assert not torch.equal(first["mask"], other["mask"])
    for item in (first, other):
        # the clean image is the file's; the watermark changes exactly the masked pixels
        flipped = not torch.equal(item["target"], files[(0, 7)]["target"])
        clean = files[(0, 7)]["target"]
        torch.testing.assert_close(item["target"], clean.flip(-1) if flipped else clean)
        changed = (item["source"] - item["target"]).abs().amax(0) > 0
        assert changed.any() and not (changed & (item["mask"][0] == 0)).any()
        assert not torch.equal(item["source"], files[(0, 7)]["source"])
    test_files = WatermarkPairsDataModule(str(root)).real_dataset("test")[1]
    test = fresh_dm.real_dataset("test")[1]  # the test split is the files, as without it
    for key in ("source", "target", "mask"):
        torch.testing.assert_close(test[key], test_files[key])
    with pytest.raises(DataError, match=r"fresh_watermarks='yes' must be true or false"):
        WatermarkPairsDataModule(str(root), fresh_watermarks="yes")


def test_clwd_recolour_turns_and_recolours_the_pair_alike(tmp_path: Path) -> None:
    root = write_clwd(tmp_path, size=16)  # watermarked = white on the mask
    plain = WatermarkPairsDataModule(str(root)).real_dataset("train")
    recoloured = WatermarkPairsDataModule(str(root), recolour=True).real_dataset("train")
    changed = 0
    for seed in range(40):
        item = recoloured[(0, seed)]
        inside = item["mask"][0] > 0
        # still aligned: unchanged off the mask; the one watermark colour on it, per channel
        torch.testing.assert_close(item["source"][:, ~inside], item["target"][:, ~inside])
        colour = item["source"][:, inside]
        torch.testing.assert_close(colour, colour[:, :1].expand_as(colour))
        mask_turned = any(
            torch.equal(item["mask"], plain[(0, seed)]["mask"].rot90(k, (-2, -1)))
            or torch.equal(item["mask"], plain[(0, seed)]["mask"].flip(-1).rot90(k, (-2, -1)))
            for k in range(4)
        )
        assert mask_turned
        changed += not torch.equal(item["target"], plain[(0, seed)]["target"])
    assert changed > 30
    torch.testing.assert_close(  # the test split as the files are
        WatermarkPairsDataModule(str(root), recolour=True).real_dataset("test")[0]["source"],
        WatermarkPairsDataModule(str(root)).real_dataset("test")[0]["source"],
    )
    with pytest.raises(DataError, match=r"recolour=1 must be true or false"):
        WatermarkPairsDataModule(str(root), recolour=1)

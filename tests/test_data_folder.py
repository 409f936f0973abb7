"""Image-folder datamodule on folders the tests write."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data import IMAGE_EXTENSIONS, DataError, ImageFolderDataModule
from ganlab.data.folder import to_eight_bit


def halves(height: int, width: int, white_left: bool = False) -> np.ndarray:
    """RGB image, one half black and the other white."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = 255 if white_left else 0
    image[:, width // 2 :] = 0 if white_left else 255
    return image


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def check_batch(batch: dict[str, torch.Tensor], dm: ImageFolderDataModule) -> None:
    assert set(batch) == {"image", "label"}
    image = batch["image"]
    assert image.dtype == torch.float32 and batch["label"].dtype == torch.int64
    assert image.shape == (dm.batch_size, *dm.sample_shape)
    assert batch["label"].shape == (dm.batch_size,)
    assert image.min() >= -1 and image.max() <= 1
    assert image.min() < -0.5 and image.max() > 0.5


def test_flat_folder_mixed_formats(tmp_path: Path) -> None:
    save(tmp_path / "a.png", halves(60, 80))
    save(tmp_path / "b.JPG", halves(90, 70))  # extensions are case-insensitive
    save(tmp_path / "c.bmp", halves(64, 64))
    save(tmp_path / "d.gif", halves(40, 40), mode="P")  # palette
    save(tmp_path / "e.png", halves(50, 50)[..., 0], mode="L")  # grayscale
    save(tmp_path / "f.webp", halves(30, 50))
    save(tmp_path / "g.tiff", halves(30, 50))
    save(tmp_path / "h.png", np.dstack([halves(32, 32), np.full((32, 32, 1), 255, np.uint8)]))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.png").write_bytes(b"macOS resource fork")  # hidden: skipped
    dm = ImageFolderDataModule(str(tmp_path), resolution=16, batch_size=8)
    assert (dm.name, dm.data_key, dm.num_classes, dm.sample_shape) == (
        "image_folder",
        "image",
        None,
        (3, 16, 16),
    )
    assert len(dm.files) == 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, dm)
    assert torch.all(batch["label"] == 0)
    image = batch["image"]
    # every file, whatever its mode, comes out black on the left, white on the right
    assert image[..., :6].max() < -0.9 and image[..., 10:].min() > 0.9
    torch.testing.assert_close(image[:, 0], image[:, 2])  # gray input repeated / kept gray
    pickle.dumps(dm.real_dataset())  # spawned DataLoader workers need a picklable dataset


def test_center_crop_or_squash(tmp_path: Path) -> None:
    # 100x50 with green side bars outside the central square
    image = halves(50, 100)
    image[:, :25] = image[:, 75:] = (0, 255, 0)
    save(tmp_path / "wide.png", image)
    cropped = ImageFolderDataModule(str(tmp_path), resolution=32, drop_last=False)
    squashed = ImageFolderDataModule(
        str(tmp_path), resolution=32, center_crop=False, drop_last=False
    )
    crop = cropped.real_dataset()[0]["image"]
    squash = squashed.real_dataset()[0]["image"]
    assert crop.shape == squash.shape == (3, 32, 32)
    green = (crop[1] - crop[0]).abs()
    assert green.max() < 0.05  # side bars cut off
    assert crop[:, :, :14].max() < -0.9 and crop[:, :, 18:].min() > 0.9
    assert (squash[1] - squash[0])[:, :6].min() > 1.9  # whole picture kept: bars still there


def test_channels_one_uses_luminance(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = (255, 0, 0)
    image[:, 4:] = 255
    save(tmp_path / "red.png", image)
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, channels=1, drop_last=False)
    out = dm.real_dataset()[0]["image"]
    assert out.shape == (1, 8, 8)
    assert out[0, :, 0].tolist() == pytest.approx([76 / 255 * 2 - 1] * 8, abs=1e-6)
    assert out[0, :, -1].tolist() == [1.0] * 8


def test_class_subfolders(tmp_path: Path) -> None:
    # cat = white left half, dog = white right half; nested folders count for their top folder
    for i in range(3):
        save(tmp_path / "cat" / f"{i}.png", halves(20, 20, white_left=True))
        save(tmp_path / "dog" / f"{i}.jpg", halves(20, 20))
    save(tmp_path / "dog" / "more" / "x.png", halves(20, 20))
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, num_classes=2, batch_size=7)
    assert dm.classes == ["cat", "dog"] and dm.num_classes == 2
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, dm)
    white_left = batch["image"][:, 0, :, :4].mean((1, 2)) > batch["image"][:, 0, :, 4:].mean((1, 2))
    assert torch.equal(batch["label"], (~white_left).long())
    assert sorted(batch["label"].tolist()) == [0, 0, 0, 1, 1, 1, 1]
    assert ImageFolderDataModule(str(tmp_path)).num_classes == 2  # null: taken from the folder
    with pytest.raises(DataError, match=r"num_classes=3 does not match .*has 2 classes"):
        ImageFolderDataModule(str(tmp_path), num_classes=3)


def test_images_beside_subfolders_are_unlabeled(tmp_path: Path) -> None:
    save(tmp_path / "top.png", halves(8, 8))
    save(tmp_path / "sub" / "x.png", halves(8, 8))
    dm = ImageFolderDataModule(str(tmp_path), drop_last=False)
    assert dm.num_classes is None and dm.labels == [0, 0]
    with pytest.raises(DataError, match=r"num_classes=5 .*no class labels.*num_classes=null"):
        ImageFolderDataModule(str(tmp_path), num_classes=5)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"{missing} does not exist; set data.path"):
        ImageFolderDataModule(str(missing))
    file = save(tmp_path / "a.png", halves(8, 8))
    with pytest.raises(DataError, match=rf"{file} is not a folder"):
        ImageFolderDataModule(str(file))


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError) as err:
        ImageFolderDataModule(str(tmp_path))
    message = str(err.value)
    assert f"{tmp_path} contains no images" in message
    assert all(ext in message for ext in IMAGE_EXTENSIONS)


def test_unreadable_files_found_at_setup(tmp_path: Path) -> None:
    save(tmp_path / "good.png", halves(8, 8))
    bad = [tmp_path / f"bad{i}.jpg" for i in range(7)]
    for path in bad:
        path.write_bytes(b"this is not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    dm = ImageFolderDataModule(str(tmp_path), batch_size=2)  # construction only lists files
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "8 of 9 files" in message and str(tmp_path) in message
    assert str(bad[0]) in message and str(bad[6]) not in message  # only the first few
    assert "and 3 more" in message and "data.skip_bad_files=true" in message


def truncate(path: Path) -> Path:
    """Keep the header, cut the pixel data: the file still opens, its pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)


def test_truncated_files_fail_at_setup_naming_them(tmp_path: Path) -> None:
    save(tmp_path / "good.png", halves(64, 64))
    png = truncate(save(tmp_path / "cut.png", noise(64, 64)))
    jpg = truncate(save(tmp_path / "cut.jpg", noise(64, 64)))
    dm = ImageFolderDataModule(str(tmp_path), batch_size=1)
    for path in (png, jpg):
        with Image.open(path):
            pass  # the header is intact: only a full decode finds these
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"2 of 3 files under {tmp_path} cannot be decoded" in message
    assert f"{png} (image file is truncated" in message and f"{jpg} (image file is" in message
    assert "set data.skip_bad_files=true to train without them" in message
    assert "\n" not in message


def test_skip_bad_files_trains_without_them(tmp_path: Path, caplog) -> None:
    for i in range(3):
        save(tmp_path / f"good{i}.png", halves(16, 16))
    cut = truncate(save(tmp_path / "cut.png", noise(64, 64)))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg")
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, batch_size=3, skip_bad_files=True)
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        dm.setup("fit")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning naming each skipped file
    assert "skipping 2 of 5 files" in warnings[0] and "data.skip_bad_files=true" in warnings[0]
    assert str(cut) in warnings[0] and str(garbage) in warnings[0]
    assert len(dm.real_dataset()) == 3
    batch = next(iter(dm.train_dataloader()))  # an epoch over the good files only
    check_batch(batch, dm)


def test_skip_bad_files_still_needs_one_good_file(tmp_path: Path) -> None:
    truncate(save(tmp_path / "cut.png", noise(64, 64)))
    dm = ImageFolderDataModule(str(tmp_path), skip_bad_files=True)
    with pytest.raises(DataError, match=rf"none of the 1 files under {tmp_path} can be decoded"):
        dm.setup("fit")


def test_skip_bad_files_is_a_boolean(tmp_path: Path) -> None:
    save(tmp_path / "a.png", halves(8, 8))
    with pytest.raises(DataError, match=r"skip_bad_files='yes' is not supported; accepted: False"):
        ImageFolderDataModule(str(tmp_path), skip_bad_files="yes")


def test_unsupported_sample_types_are_named(tmp_path: Path) -> None:
    save(tmp_path / "good.png", halves(8, 8))
    int32 = tmp_path / "int32.tif"
    Image.fromarray(np.zeros((8, 8), np.int32)).save(int32)
    floats = tmp_path / "float.tif"
    Image.fromarray(np.zeros((8, 8), np.float32)).save(floats)
    with pytest.raises(DataError) as err:
        ImageFolderDataModule(str(tmp_path), drop_last=False).setup("fit")
    message = str(err.value)
    assert f"{int32} (PIL mode I (32-bit or signed integer samples) is not supported" in message
    assert f"{floats} (PIL mode F (floating-point samples) is not supported" in message
    assert "save it as 8-bit, or 16-bit unsigned grayscale" in message


def test_the_decode_check_is_recorded_by_names_sizes_and_times(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    good = save(folder / "a.png", noise(64, 64))
    save(folder / "b.png", noise(64, 64, seed=1))
    ImageFolderDataModule(str(folder), batch_size=2).setup("fit")
    stat = good.stat()
    # Same name, size and time, broken pixels: the recorded check is trusted, nothing re-decoded.
    data = bytearray(good.read_bytes())
    data[200:-20] = bytes(len(data) - 220)
    good.write_bytes(bytes(data))
    os.utime(good, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    ImageFolderDataModule(str(folder), batch_size=2).setup("fit")
    # A new modification time is a new folder: decoded again, and the broken file found.
    os.utime(good, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DataError, match=rf"1 of 2 files .*{good}"):
        ImageFolderDataModule(str(folder), batch_size=2).setup("fit")


def test_file_broken_after_setup_is_named_at_load(tmp_path: Path) -> None:
    save(tmp_path / "good.png", halves(64, 64))
    changing = save(tmp_path / "changing.png", noise(64, 64))
    dm = ImageFolderDataModule(str(tmp_path), batch_size=2)
    dm.setup("fit")  # both decode now
    truncate(changing)
    with pytest.raises(DataError, match=rf"cannot load image {changing}: .*fix or remove"):
        list(dm.train_dataloader())


@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_grayscale_loads_as_its_eight_bit_save(tmp_path: Path, channels) -> None:
    eight = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
    eight[0, :2] = (0, 255)
    # the same picture at 16 bits: 8-bit value v is 257 v, give or take less than half a step
    jitter = np.random.default_rng(1).integers(-128, 129, eight.shape)
    sixteen = np.clip(eight.astype(np.int64) * 257 + jitter, 0, 65535).astype(np.uint16)
    assert sixteen.min() == 0 and sixteen.max() > 65400  # spread over the whole range
    save(tmp_path / "a_eight.png", eight)
    save(tmp_path / "b_sixteen.png", sixteen)
    save(tmp_path / "c_sixteen.tif", sixteen)
    for name in ("b_sixteen.png", "c_sixteen.tif"):
        with Image.open(tmp_path / name) as image:
            assert image.mode in ("I;16", "I;16B", "I")  # really 16-bit on disk
    dm = ImageFolderDataModule(str(tmp_path), resolution=32, channels=channels, drop_last=False)
    dm.setup("fit")
    reference, png, tif = (dm.real_dataset()[i]["image"] for i in range(3))
    assert reference.shape == (channels, 32, 32)
    assert reference.min() == -1 and reference.max() == 1
    torch.testing.assert_close(png, reference, rtol=0, atol=0)
    torch.testing.assert_close(tif, reference, rtol=0, atol=0)
    # older Pillow opens a 16-bit PNG in mode "I": the same scaling applies
    as_older_pillow = to_eight_bit(Image.fromarray(sixteen.astype(np.int32)), "PNG")
    assert np.array_equal(np.asarray(as_older_pillow), eight)


def test_file_removed_after_listing_is_named(tmp_path: Path) -> None:
    save(tmp_path / "a.png", halves(8, 8))
    gone = save(tmp_path / "b.png", halves(8, 8))
    dm = ImageFolderDataModule(str(tmp_path), drop_last=False)
    gone.unlink()
    with pytest.raises(DataError, match=rf"cannot read {gone} \(No such file or directory\); "):
        dm.identity()

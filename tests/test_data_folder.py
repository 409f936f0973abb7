"""Image-folder datamodule on folders the tests write."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.data import IMAGE_EXTENSIONS, DataError, ImageFolderDataModule


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


def test_file_failing_at_load_names_it(tmp_path: Path) -> None:
    save(tmp_path / "good.png", halves(64, 64))
    truncated = save(
        tmp_path / "truncated.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    )
    truncated.write_bytes(truncated.read_bytes()[:400])  # header intact, pixel data cut
    dm = ImageFolderDataModule(str(tmp_path), batch_size=2)
    dm.setup("fit")  # the header check passes
    with pytest.raises(DataError, match=rf"cannot load image {truncated}: .*fix or remove"):
        list(dm.train_dataloader())

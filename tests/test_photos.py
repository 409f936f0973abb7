"""The synthetic photo sets: written in each real layout, deterministic, idempotent, held out."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlab.data import degradations, photos
from ganlab.data.base import DataError
from ganlab.data.photos import PHOTO_TASKS, prepare_photos

NUM_TRAIN, NUM_TEST = 8, 6
SIZE = photos.CROP_SIZE


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory):
    """Every task's set, written once for the module."""
    base = tmp_path_factory.mktemp("photos")
    return {task: prepare_photos(task, base / task, NUM_TRAIN, NUM_TEST) for task in PHOTO_TASKS}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def ids(count: int, prefix: str = "", suffix: str = "") -> list[str]:
    return [f"{prefix}{i:04d}{suffix}.png" for i in range(count)]


EXPECTED_FILES = {
    "watermark": {
        f"{split}/{kind}": ids(count)
        for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST))
        for kind in ("Watermarked_image", "Watermark_free_image", "Mask")
    },
    "sr4": {
        "train/HR": ids(NUM_TRAIN),
        "train/LR_bicubic/X4": ids(NUM_TRAIN, suffix="x4"),
        "test/GTmod12": ids(NUM_TEST),
        "test/LRbicx4": ids(NUM_TEST),
    },
    "inpaint": {"train": ids(NUM_TRAIN), "test": ids(NUM_TEST)},
    "denoise": {"train": ids(NUM_TRAIN), "test": ids(NUM_TEST)},
    "cyclegan": {
        "trainA": ids(NUM_TRAIN),
        "trainB": ids(NUM_TRAIN, prefix="b"),
        "testA": ids(NUM_TEST),
        "testB": ids(NUM_TEST),
    },
}


@pytest.mark.parametrize("task", PHOTO_TASKS)
def test_each_task_is_written_in_its_layout_with_the_asked_counts(photo_sets, task):
    root = photo_sets[task]
    for folder, expected in EXPECTED_FILES[task].items():
        assert names(root / folder) == expected, folder
        for name in expected:
            image = pixels(root / folder / name)
            side = SIZE // 4 if "LR" in folder else SIZE
            if folder.endswith("Mask"):
                assert image.shape == (side, side)
            else:
                assert image.shape == (side, side, 3) and image.dtype == np.uint8
    protocol = json.loads((root / "PROTOCOL.json").read_text())
    assert protocol["parameters"] == {
        "task": task,
        "recipe_version": photos.RECIPE_VERSION,
        "num_train": NUM_TRAIN,
        "num_test": NUM_TEST,
        "seed": 0,
        **({"train_watermarks": "fixed"} if task == "watermark" else {}),
    }
    assert protocol["held_out_photos"] == ["astronaut"]
    assert not set(protocol["held_out_photos"]) & set(protocol["train_photos"])


@pytest.mark.parametrize("task", ["denoise", "cyclegan"])
def test_test_crops_come_only_from_the_held_out_photo(photo_sets, task):
    root = photo_sets[task]
    crops = json.loads((root / "crops.json").read_text())
    folders = {"test": "testA"} if task == "cyclegan" else {}
    for split, rows in crops.items():
        folder = root / folders.get(split, split)
        assert [f"{row['id']}.png" for row in rows] == names(folder)
        photo_names = photos.HELD_OUT_PHOTOS if split == "test" else photos.TRAIN_PHOTOS
        for row in rows:
            assert row["photo"] in photo_names
            photo = photos._photo(row["photo"])
            top, left = row["top"], row["left"]
            original = photo[top : top + SIZE, left : left + SIZE]
            assert original.astype(np.float64).std() >= photos.MIN_CROP_STD
            stylised = split == "trainB"
            expected = degradations.stylise(original) if stylised else original
            np.testing.assert_array_equal(pixels(folder / f"{row['id']}.png"), expected)
    test_tiles = {(r["top"], r["left"]) for r in crops["test"]}
    assert len(test_tiles) == NUM_TEST  # distinct tiles


def test_watermarks_change_pixels_only_where_the_mask_is(photo_sets):
    root = photo_sets["watermark"]
    changed_inside = []
    for split in ("train", "test"):
        for name in names(root / split / "Mask"):
            mask = pixels(root / split / "Mask" / name)
            assert set(np.unique(mask).tolist()) == {0, 255}
            marked = pixels(root / split / "Watermarked_image" / name).astype(int)
            clean = pixels(root / split / "Watermark_free_image" / name).astype(int)
            differs = (marked != clean).any(axis=-1)
            assert not differs[mask == 0].any(), f"{split}/{name} changed outside its mask"
            assert (mask == 255).sum() >= degradations.MIN_MASK_PIXELS
            changed_inside.append(differs[mask == 255].mean())
    assert np.mean(changed_inside) > 0.8


def test_test_watermarks_use_words_and_logos_training_never_shows():
    assert not set(degradations.TRAIN_WORDS) & set(degradations.TEST_WORDS)
    assert not set(degradations.TRAIN_LOGOS) & set(degradations.TEST_LOGOS)
    rng = np.random.default_rng(0)
    for logo in degradations.TRAIN_LOGOS + degradations.TEST_LOGOS:  # every logo draws a shape
        assert degradations._logo_coverage(logo, rng).max() == 255


def test_watermark_opacity_stays_in_its_range():
    clean = np.full((SIZE, SIZE, 3), 200, np.uint8)
    for seed in range(20):
        marked, mask = degradations.add_watermark(clean, np.random.default_rng(seed))
        # on a flat image the change is opacity * coverage * |colour - 200|, coverage <= 1
        change = np.abs(marked.astype(float) - 200).max(axis=-1)
        assert change[~mask].max() == 0
        assert change.max() <= degradations.OPACITY[1] * 200 + 0.5


@pytest.mark.parametrize("sized_font", [True, False])
def test_text_is_rendered_at_about_the_asked_size(sized_font):
    if sized_font and not degradations.SIZED_DEFAULT_FONT:
        pytest.skip("this Pillow has no sized default font (needs >= 10.1 with FreeType)")
    coverage = degradations.text_coverage("SAMPLE", 18, sized_font=sized_font)
    rows = np.flatnonzero((coverage > 127).any(axis=1))
    assert 10 <= rows[-1] - rows[0] + 1 <= 22
    assert coverage.shape[1] > coverage.shape[0]  # a word is wider than tall


def test_sr_low_resolution_is_the_recorded_bicubic_kernel(photo_sets):
    root = photo_sets["sr4"]
    for high, low in (("train/HR", "train/LR_bicubic/X4"), ("test/GTmod12", "test/LRbicx4")):
        for name in names(root / high):
            low_name = name.replace(".png", "x4.png") if "X4" in low else name
            hr = pixels(root / high / name)
            expected = np.asarray(Image.fromarray(hr).resize((16, 16), Image.Resampling.BICUBIC))
            np.testing.assert_array_equal(pixels(root / low / low_name), expected)
    protocol = json.loads((root / "PROTOCOL.json").read_text())
    assert protocol["scale"] == 4 and "BICUBIC" in protocol["kernel"]


def test_inpainting_mask_sets_are_binary_of_each_kind(photo_sets):
    root = photo_sets["inpaint"]
    for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        with np.load(root / f"masks_{split}.npz") as archive:
            masks, kinds = archive["masks"], archive["kinds"]
        assert masks.shape == (count, 1, SIZE, SIZE) and masks.dtype == np.uint8
        assert set(np.unique(masks).tolist()) == {0, 1}
        assert list(kinds) == [degradations.MASK_KINDS[i % 3] for i in range(count)]
        for mask, kind in zip(masks[:, 0], kinds, strict=True):
            if kind == "centre":
                assert mask[24:40, 24:40].all() and mask.sum() == 16 * 16
            elif kind == "box":
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                assert (len(rows), len(cols), mask.sum()) == (24, 24, 24 * 24)
            else:
                assert degradations.STROKE_AREA[0] < mask.mean() < degradations.STROKE_AREA[1]


def test_cyclegan_domains_are_unpaired_in_training_and_paired_by_name_in_test(photo_sets):
    root = photo_sets["cyclegan"]
    for name in names(root / "testA"):
        expected = degradations.stylise(pixels(root / "testA" / name))
        np.testing.assert_array_equal(pixels(root / "testB" / name), expected)
    crops = json.loads((root / "crops.json").read_text())
    a_origins = {(r["photo"], r["top"], r["left"]) for r in crops["trainA"]}
    b_origins = {(r["photo"], r["top"], r["left"]) for r in crops["trainB"]}
    assert len(a_origins) == len(b_origins) == NUM_TRAIN and not a_origins & b_origins
    styled_a = [degradations.stylise(pixels(root / "trainA" / n)) for n in names(root / "trainA")]
    for name in names(root / "trainB"):
        b = pixels(root / "trainB" / name)
        assert not any(np.array_equal(b, s) for s in styled_a)


@pytest.mark.parametrize("task", ["watermark", "inpaint"])
def test_a_seed_writes_the_same_files_every_time(tmp_path, task):
    first = prepare_photos(task, tmp_path / "first", 5, 4, seed=3)
    second = prepare_photos(task, tmp_path / "second", 5, 4, seed=3)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for file in files:
        if file.suffix == ".npz":  # a zip's entries carry their write time: compare arrays
            with np.load(first / file) as a, np.load(second / file) as b:
                assert all(np.array_equal(a[k], b[k]) for k in a.files)
        else:
            assert (first / file).read_bytes() == (second / file).read_bytes(), file
    other = prepare_photos(task, tmp_path / "other", 5, 4, seed=4)
    assert (other / "PROTOCOL.json").read_bytes() != (first / "PROTOCOL.json").read_bytes()
    assert (other / "crops.json").read_bytes() != (first / "crops.json").read_bytes()


def test_the_test_split_does_not_depend_on_num_train(tmp_path):
    small = prepare_photos("watermark", tmp_path / "small", 3, 4)
    large = prepare_photos("watermark", tmp_path / "large", 9, 4)
    for file in sorted((small / "test").rglob("*.png")):
        assert file.read_bytes() == (large / file.relative_to(small)).read_bytes()


def test_preparing_again_with_the_same_parameters_leaves_the_set_alone(photo_sets):
    root = photo_sets["denoise"]
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert prepare_photos("denoise", root, NUM_TRAIN, NUM_TEST) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps


def test_other_parameters_on_an_existing_set_are_refused(photo_sets):
    root = photo_sets["denoise"]
    with pytest.raises(DataError) as caught:
        prepare_photos("denoise", root, NUM_TRAIN + 1, NUM_TEST)
    message = str(caught.value)
    assert f"num_train={NUM_TRAIN}," in message and f"num_train={NUM_TRAIN + 1}," in message
    assert str(root) in message and "delete the folder or pick another root" in message
    with pytest.raises(DataError, match="task='denoise'.*task='sr4'"):
        prepare_photos("sr4", root, NUM_TRAIN, NUM_TEST)


def test_an_unknown_task_is_refused_with_the_accepted_names(tmp_path):
    with pytest.raises(DataError) as caught:
        prepare_photos("paintings", tmp_path / "x")
    assert str(caught.value) == (
        "photos task='paintings' is not supported; accepted: "
        "'watermark', 'sr4', 'inpaint', 'denoise', 'cyclegan'"
    )
    assert not (tmp_path / "x").exists()


def test_bad_counts_and_roots_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"num_train=0 must be an integer >= 1"):
        prepare_photos("sr4", tmp_path / "a", num_train=0)
    max_test = len(photos._test_tiles())
    with pytest.raises(DataError, match=rf"num_test=99 is more than the {max_test} distinct"):
        prepare_photos("sr4", tmp_path / "a", num_train=2, num_test=99)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds files but no PROTOCOL.json"):
        prepare_photos("sr4", foreign, 2, 2)
    assert (foreign / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(DataError, match="is a file, not a folder; pick another root"):
        prepare_photos("sr4", a_file, 2, 2)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "PROTOCOL.json").write_text("{not json")
    with pytest.raises(DataError, match="is not a ganlab photo protocol"):
        prepare_photos("sr4", broken, 2, 2)


def test_an_empty_root_folder_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    root = prepare_photos("denoise", tmp_path / "empty", 2, 2)
    assert names(root / "train") == ids(2)


def test_an_interrupted_run_leaves_no_half_written_set(tmp_path, monkeypatch):
    save = photos._save_png
    written = []

    def save_then_interrupt(path, image):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(path)
        save(path, image)

    monkeypatch.setattr(photos, "_save_png", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_photos("sr4", tmp_path / "sr4", 4, 2)
    assert list(tmp_path.iterdir()) == []  # neither the set nor its partial folder
    monkeypatch.setattr(photos, "_save_png", save)
    root = prepare_photos("sr4", tmp_path / "sr4", 4, 2)
    assert names(root / "train" / "HR") == ids(4)


def test_without_scikit_image_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    degradations.skimage_module.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage", None)  # what `import skimage` sees uninstalled
    try:
        with pytest.raises(DataError) as caught:
            prepare_photos("denoise", tmp_path / "denoise", 2, 2)
    finally:
        degradations.skimage_module.cache_clear()
    assert str(caught.value) == (
        "the synthetic photo sets are cut from scikit-image's bundled photos, and scikit-image "
        "is not installed; pip install 'scikit-image>=0.24'"
    )
    assert not (tmp_path / "denoise").exists()

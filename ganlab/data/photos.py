"""Image-to-image datasets synthesised from the photographs that ship with scikit-image, written
to disk in the layouts of the real datasets, so the same loaders read them.

Every set holds 64x64 RGB crops: training crops are drawn at random from `TRAIN_PHOTOS`; test
crops are distinct 64x64 tiles of `HELD_OUT_PHOTOS`, which no training crop comes from. Crops
whose standard deviation is below `MIN_CROP_STD` (on 0..255) are rejected: near-flat crops (the
black sky of hubble_deep_field, the rim of retina) give an infinite PSNR. One seed fixes every
file. `root/PROTOCOL.json` records what was synthesised (eval copies it into score protocols)
and `root/crops.json` where each crop comes from.

Layouts under root (the real datasets'), one per task:
- watermark (CLWD): `{train,test}/{Watermarked_image,Watermark_free_image,Mask}/<id>.png`; a
  text or logo watermark, alpha-blended.
- sr4 (DIV2K, Set5): `train/HR/<id>.png` + `train/LR_bicubic/X4/<id>x4.png`,
  `test/GTmod12/<id>.png` + `test/LRbicx4/<id>.png`; LR = PIL bicubic 64 -> 16.
- inpaint: `{train,test}/<id>.png` + `masks_{train,test}.npz`; centre, box and free-form holes.
- denoise: `{train,test}/<id>.png`, clean; the loader adds the Gaussian noise.
- cyclegan: `{trainA,trainB,testA,testB}/<id>.png`; B = a "painting" stylisation.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image

from ganlab.data import degradations as dg
from ganlab.data.base import DataError, check_choice, check_int

PHOTO_TASKS = ("watermark", "sr4", "inpaint", "denoise", "cyclegan")
# Bump when the recipe changes what a seed writes: a folder made by another recipe is refused.
RECIPE_VERSION = 1
CROP_SIZE = 64
MIN_CROP_STD = 10.0
TRAIN_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",  # the left view; the right one is never used
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
HELD_OUT_PHOTOS = ("astronaut",)  # 62 of its 64 tiles have std >= 10
DEFAULT_NUM_TRAIN = 320
DEFAULT_NUM_TEST = 48


def prepare_photos(
    task: str,
    root: str | Path,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_test: int = DEFAULT_NUM_TEST,
    seed: int = 0,
    train_watermarks: str = "fixed",  # watermark: "varied" adds random strings and shapes
) -> Path:
    """Write the `task` photo set into `root` (unless it is there already) and return `root`.

    Idempotent: a `root` whose PROTOCOL.json holds the same parameters is left as it is; one
    made with other parameters is refused. The set is written into a hidden folder beside
    `root` and renamed at the end, so an interrupted run leaves no half-written set.
    """
    check_choice("photos task", task, PHOTO_TASKS)
    check_int("num_train", num_train, 1)
    check_int("num_test", num_test, 1)
    check_int("seed", seed, 0)
    check_choice("train_watermarks", train_watermarks, dg.TRAIN_WATERMARKS)
    if task != "watermark" and train_watermarks != "fixed":
        raise DataError(
            f"train_watermarks={train_watermarks!r} applies to task 'watermark' only, not "
            f"{task!r}; leave it 'fixed'"
        )
    dg.skimage_module()  # the photos are scikit-image's: say so first if it is missing
    root = Path(root).expanduser()
    parameters = {
        "task": task,
        "recipe_version": RECIPE_VERSION,
        "num_train": num_train,
        "num_test": num_test,
        "seed": seed,
    }
    if task == "watermark":  # the other tasks' protocols (and their existing sets) unchanged
        parameters["train_watermarks"] = train_watermarks
    if _existing_set_matches(root, parameters):
        return root
    max_test = len(_test_tiles())
    if num_test > max_test:
        raise DataError(
            f"num_test={num_test} is more than the {max_test} distinct {CROP_SIZE}x{CROP_SIZE} "
            f"tiles with std >= {MIN_CROP_STD:g} in the held-out photo(s) "
            f"{', '.join(HELD_OUT_PHOTOS)}; set num_test <= {max_test}"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _write_set(partial, parameters)
        try:
            os.replace(partial, root)  # an empty `root` folder is replaced too
        except OSError:
            # another process (a DDP rank) finished the same set first
            if not _existing_set_matches(root, parameters):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def _existing_set_matches(root: Path, parameters: dict[str, Any]) -> bool:
    """True if `root` holds the set of `parameters`, False if `root` is absent or an empty
    folder; otherwise a DataError that says what is there."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise DataError(f"photos root {root} is a file, not a folder; pick another root")
    protocol_file = root / "PROTOCOL.json"
    if not protocol_file.is_file():
        if any(root.iterdir()):
            raise DataError(
                f"photos root {root} holds files but no PROTOCOL.json, so it is not a ganlab "
                "photo set; delete the folder or pick another root"
            )
        return False
    try:
        found = json.loads(protocol_file.read_text())["parameters"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"{protocol_file} is not a ganlab photo protocol ({err}); delete the folder {root} "
            "or pick another root"
        ) from None
    if found != parameters:
        raise DataError(
            f"{root} holds a photo set made with {_describe(found)}, not the one asked for "
            f"({_describe(parameters)}); delete the folder or pick another root"
        )
    return True


def _describe(parameters: Any) -> str:
    if not isinstance(parameters, dict):
        return repr(parameters)
    return ", ".join(f"{key}={value!r}" for key, value in parameters.items())


def _write_set(folder: Path, parameters: dict[str, Any]) -> None:
    task, seed = parameters["task"], parameters["seed"]
    # one stream each, so the test split does not change with num_train
    train_crop_rng, test_crop_rng, train_rng, test_rng = (
        np.random.default_rng([seed, stream]) for stream in range(4)
    )
    train_count = parameters["num_train"] * (2 if task == "cyclegan" else 1)
    train_crops, train_origins = _train_crops(train_crop_rng, train_count)
    test_crops, test_origins = _test_crops(test_crop_rng, parameters["num_test"])
    writer = {
        "watermark": _write_watermark,
        "sr4": _write_sr4,
        "inpaint": _write_inpaint,
        "denoise": _write_denoise,
        "cyclegan": _write_cyclegan,
    }[task]
    if task == "watermark":
        varied = parameters["train_watermarks"] == "varied"
        writer = functools.partial(writer, varied=varied)
    details = writer(folder, train_crops, test_crops, train_rng, test_rng)
    crops = {"train": _origin_rows(train_origins), "test": _origin_rows(test_origins)}
    if task == "cyclegan":  # the first half went to trainA, the second to trainB
        half = parameters["num_train"]
        crops = {
            "trainA": _origin_rows(train_origins[:half]),
            "trainB": _origin_rows(train_origins[half:], prefix="b"),
            "test": crops["test"],
        }
    _write_json(folder / "crops.json", crops)
    protocol = {
        "parameters": parameters,
        "source": "ganlab.data.photos",
        "crop_size": CROP_SIZE,
        "min_crop_std": MIN_CROP_STD,
        "train_photos": list(TRAIN_PHOTOS),
        "held_out_photos": list(HELD_OUT_PHOTOS),
        "counts": details.pop("counts"),
        "versions": {"pillow": PIL.__version__, "scikit-image": dg.skimage_module().__version__},
        **details,
    }
    _write_json(folder / "PROTOCOL.json", protocol)  # last: its presence marks a complete set


# --- crops ------------------------------------------------------------------------------------


@functools.cache
def _photo(name: str) -> np.ndarray:
    image = getattr(dg.skimage_module().data, name)()
    return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)


def _crop_std(crop: np.ndarray) -> float:
    return float(crop.astype(np.float64).std())


def _train_crops(rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[tuple]]:
    """`count` random crops, the photos taken in turn; a near-flat crop is drawn again."""
    crops, origins = [], []
    for index in range(count):
        name = TRAIN_PHOTOS[index % len(TRAIN_PHOTOS)]
        photo = _photo(name)
        while True:
            top = int(rng.integers(0, photo.shape[0] - CROP_SIZE + 1))
            left = int(rng.integers(0, photo.shape[1] - CROP_SIZE + 1))
            crop = photo[top : top + CROP_SIZE, left : left + CROP_SIZE]
            if _crop_std(crop) >= MIN_CROP_STD:
                break
        crops.append(crop)
        origins.append((name, top, left))
    return np.stack(crops), origins


@functools.cache
def _test_tiles() -> tuple[tuple[str, int, int], ...]:
    """The non-overlapping tiles of the held-out photos with std >= MIN_CROP_STD."""
    tiles = []
    for name in HELD_OUT_PHOTOS:
        photo = _photo(name)
        for top in range(0, photo.shape[0] - CROP_SIZE + 1, CROP_SIZE):
            for left in range(0, photo.shape[1] - CROP_SIZE + 1, CROP_SIZE):
                crop = photo[top : top + CROP_SIZE, left : left + CROP_SIZE]
                if _crop_std(crop) >= MIN_CROP_STD:
                    tiles.append((name, top, left))
    return tuple(tiles)


def _test_crops(rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[tuple]]:
    tiles = _test_tiles()
    chosen = sorted(rng.choice(len(tiles), size=count, replace=False))
    origins = [tiles[i] for i in chosen]
    crops = [_photo(n)[t : t + CROP_SIZE, x : x + CROP_SIZE] for n, t, x in origins]
    return np.stack(crops), origins


def _origin_rows(origins: list[tuple], prefix: str = "") -> list[dict[str, Any]]:
    return [
        {"id": prefix + _name(i), "photo": name, "top": top, "left": left}
        for i, (name, top, left) in enumerate(origins)
    ]


def _name(index: int) -> str:
    return f"{index:04d}"


def _save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


# --- tasks --------------------------------------------------------------------------------------


def _write_watermark(folder, train, test, train_rng, test_rng, varied=False) -> dict[str, Any]:
    for split, crops, rng, words, logos, split_varied in (
        ("train", train, train_rng, dg.TRAIN_WORDS, dg.TRAIN_LOGOS, varied),
        ("test", test, test_rng, dg.TEST_WORDS, dg.TEST_LOGOS, False),  # the same either way
    ):
        for index, clean in enumerate(crops):
            marked, mask = dg.add_watermark(clean, rng, words, logos, split_varied)
            name = f"{_name(index)}.png"
            _save_png(folder / split / "Watermark_free_image" / name, clean)
            _save_png(folder / split / "Watermarked_image" / name, marked)
            _save_png(folder / split / "Mask" / name, mask.astype(np.uint8) * 255)
    font = (
        "Pillow's bundled TrueType font, ImageFont.load_default(size)"
        if dg.SIZED_DEFAULT_FONT
        else "Pillow's bitmap default font, resized to the size"
    )
    return {
        "counts": {"train": len(train), "test": len(test)},
        "layout": "CLWD: {train,test}/{Watermarked_image,Watermark_free_image,Mask}/<id>.png",
        "watermark": {
            "blend": "J = I*(1 - a*m) + a*m*colour; m = shape coverage, a = opacity",
            "opacity": list(dg.OPACITY),
            "mask": f"m > 0 (m below {dg.COVERAGE_THRESHOLD} set to 0 first), 255 = marked",
            "text_share": dg.TEXT_SHARE,
            "rotation_degrees": {"text": list(dg.TEXT_ROTATION), "logo": list(dg.LOGO_ROTATION)},
            "grey_share": dg.GREY_SHARE,
            "font": font,
            "font_sizes": list(dg.FONT_SIZES),
            "logo_sizes": list(dg.LOGO_SIZES),
            "train_words": list(dg.TRAIN_WORDS),
            "test_words": list(dg.TEST_WORDS),
            "train_logos": list(dg.TRAIN_LOGOS),
            "test_logos": list(dg.TEST_LOGOS),
            "train_varied": (
                {
                    "random_text_share": dg.RANDOM_TEXT_SHARE,
                    "random_text": f"{dg.RANDOM_TEXT_LENGTH} chars of letters and digits, "
                    "never containing a test word",
                    "text_stretch": list(dg.TEXT_STRETCH),
                    "text_shear": list(dg.TEXT_SHEAR),
                    "text_strokes": list(dg.TEXT_STROKES),
                    "procedural_logos": list(dg.PROCEDURAL_LOGOS),
                    "procedural_logo_share": dg.PROCEDURAL_LOGO_SHARE,
                }
                if varied
                else None
            ),
        },
    }


def _write_sr4(folder, train, test, train_rng, test_rng) -> dict[str, Any]:
    for index, hr in enumerate(train):
        _save_png(folder / "train" / "HR" / f"{_name(index)}.png", hr)
        _save_png(
            folder / "train" / "LR_bicubic" / "X4" / f"{_name(index)}x4.png", dg.downscale(hr)
        )
    for index, hr in enumerate(test):
        _save_png(folder / "test" / "GTmod12" / f"{_name(index)}.png", hr)
        _save_png(folder / "test" / "LRbicx4" / f"{_name(index)}.png", dg.downscale(hr))
    return {
        "counts": {"train": len(train), "test": len(test)},
        "layout": "DIV2K train/{HR/<id>.png, LR_bicubic/X4/<id>x4.png}; "
        "Set5 test/{GTmod12,LRbicx4}/<id>.png (HR 64x64, a multiple of the scale)",
        "scale": dg.SR_SCALE,
        "kernel": dg.SR_KERNEL,
        "lr_size": CROP_SIZE // dg.SR_SCALE,
    }


def _write_inpaint(folder, train, test, train_rng, test_rng) -> dict[str, Any]:
    for split, crops in (("train", train), ("test", test)):
        for index, crop in enumerate(crops):
            _save_png(folder / split / f"{_name(index)}.png", crop)
    for split, count, rng in (("train", len(train), train_rng), ("test", len(test), test_rng)):
        kinds = [dg.MASK_KINDS[i % len(dg.MASK_KINDS)] for i in range(count)]
        masks = np.stack([dg.inpainting_mask(kind, rng, CROP_SIZE)[None] for kind in kinds])
        np.savez_compressed(folder / f"masks_{split}.npz", masks=masks, kinds=np.array(kinds))
    return {
        "counts": {"train": len(train), "test": len(test)},
        "layout": "{train,test}/<id>.png; masks_{train,test}.npz: masks (N,1,64,64) uint8, "
        "1 = missing; kinds (N,) in turn centre, box, free_form",
        "masks": {
            "centre": f"{dg.CENTRE_HOLE}x{dg.CENTRE_HOLE} hole at the centre",
            "box": f"{dg.BOX_HOLE}x{dg.BOX_HOLE} hole at a uniform position inside the image",
            "free_form": {
                "recipe": "MMagic random_irregular_mask (DeepFillv2), sizes divided by 4",
                "vertices": list(dg.STROKE_VERTICES),
                "max_angle": dg.STROKE_MAX_ANGLE,
                "length": list(dg.STROKE_LENGTH),
                "brush_width": list(dg.STROKE_WIDTH),
                "area": list(dg.STROKE_AREA),
            },
        },
    }


def _write_denoise(folder, train, test, train_rng, test_rng) -> dict[str, Any]:
    for split, crops in (("train", train), ("test", test)):
        for index, crop in enumerate(crops):
            _save_png(folder / split / f"{_name(index)}.png", crop)
    return {
        "counts": {"train": len(train), "test": len(test)},
        "layout": "{train,test}/<id>.png (clean crops)",
        "noise": "Gaussian, added by the loader (its sigma or sigma range, on 0..255)",
    }


def _write_cyclegan(folder, train, test, train_rng, test_rng) -> dict[str, Any]:
    half = len(train) // 2  # A and B are different crops: unpaired by construction
    for index, crop in enumerate(train[:half]):
        _save_png(folder / "trainA" / f"{_name(index)}.png", crop)
    for index, crop in enumerate(train[half:]):
        _save_png(folder / "trainB" / f"b{_name(index)}.png", dg.stylise(crop))
    for index, crop in enumerate(test):
        _save_png(folder / "testA" / f"{_name(index)}.png", crop)
        _save_png(folder / "testB" / f"{_name(index)}.png", dg.stylise(crop))
    return {
        "counts": {"trainA": half, "trainB": len(train) - half, "test": len(test)},
        "layout": "{trainA,trainB,testA,testB}/<id>.png; testB/<id> = stylised testA/<id> "
        "(hidden pairs for scoring); trainB holds other crops than trainA",
        "stylisation": (
            f"median 5x5, {dg.PAINT_LEVELS} levels per channel with gains {list(dg.PAINT_TINT)}, "
            f"edges (PIL FIND_EDGES on the smoothed grey > {dg.PAINT_EDGE_THRESHOLD}) "
            f"darkened to {dg.PAINT_EDGE_DARKEN}"
        ),
    }

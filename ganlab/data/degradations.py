"""What the synthetic photo sets do to a clean crop: alpha-blended text and logo watermarks,
the bicubic downscaling of super-resolution, inpainting holes (centre, box, free-form strokes) and
CycleGAN's "painting" style. All randomness comes from the `numpy.random.Generator` passed in."""

from __future__ import annotations

import functools
import math
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ganlab.data.base import DataError, check_choice

SR_SCALE = 4
SR_KERNEL = "PIL Image.resize(BICUBIC), antialiased (a = -0.5, support scaled by the factor)"

# Watermarks: the test split uses words and logos that training never shows.
TRAIN_WORDS = ("SAMPLE", "PREVIEW", "COPYRIGHT", "STOCK", "draft", "photo", "studio", "demo")
TEST_WORDS = ("PROOF", "ARCHIVE", "LICENSED", "COPY", "gallery", "agency", "press", "image")
TRAIN_LOGOS = ("horse", "skimage_logo", "star", "disk")
TEST_LOGOS = ("handwriting", "ring", "triangle", "cross")
FONT_SIZES = (9, 22)  # inclusive range, pixels
LOGO_SIZES = (16, 48)  # longest side, pixels
OPACITY = (0.3, 0.6)
TEXT_SHARE = 0.5  # of watermarks that are text; the others are logos
TEXT_ROTATION = (-45.0, 45.0)  # degrees
LOGO_ROTATION = (0.0, 360.0)
GREY_SHARE = 0.5  # of watermark colours that are a grey level; the others any RGB
# train_watermarks="varied": besides the words and logos above, random strings and procedural
# shapes, with stretched, sheared and bold text, so that the detector learns what a
# semi-transparent overlay looks like rather than eight words (the test split keeps its own).
TRAIN_WATERMARKS = ("fixed", "varied")
RANDOM_TEXT_SHARE = 0.5  # of varied text watermarks that are a random string
RANDOM_TEXT_LENGTH = (2, 11)  # numpy-style range: upper bound excluded
RANDOM_TEXT_CHARS = string.ascii_letters + string.digits
PROCEDURAL_LOGOS = ("polygon", "frame", "glyph")  # a new random shape each time
PROCEDURAL_LOGO_SHARE = 0.5  # of varied logo watermarks
GLYPH_CHARS = string.ascii_letters + string.digits + "©@&#$%?"
TEXT_STRETCH = (0.7, 1.5)  # width factor of varied text
TEXT_SHEAR = (-0.35, 0.35)  # x shift per row, of varied text (italic-like)
TEXT_STROKES = (0, 3)  # stroke widths of varied text (0 regular, 1-2 bold); range, upper excluded
# Shape coverage below this is set to 0 before blending, so the mask (coverage > 0) holds every
# changed pixel and nothing else.
COVERAGE_THRESHOLD = 0.1
MIN_MASK_PIXELS = 12

# Inpainting masks: MMagic's DeepFillv2 free-form parameters at 256x256, divided by 4 for 64x64
# (vertices (4, 10), max angle 6 rad, length (20, 128), brush width (10, 45), area 15-65 %).
CENTRE_HOLE = 16
BOX_HOLE = 24
STROKE_VERTICES = (4, 10)  # numpy-style ranges: upper bound excluded
STROKE_MAX_ANGLE = 6
STROKE_LENGTH = (5, 32)
STROKE_WIDTH = (3, 11)
STROKE_AREA = (0.15, 0.65)
MASK_KINDS = ("centre", "box", "free_form")

# CycleGAN's "painting": median smoothing, a warm 6-level palette per channel, dark edges.
PAINT_LEVELS = 6
PAINT_TINT = (1.10, 1.0, 0.82)  # red, green, blue gain of the palette
PAINT_EDGE_THRESHOLD = 40
PAINT_EDGE_DARKEN = 0.35


def _has_sized_default_font() -> bool:
    """`ImageFont.load_default(size=...)` needs Pillow >= 10.1 built with FreeType."""
    try:
        ImageFont.load_default(size=12)
    except (TypeError, ImportError, OSError):
        return False
    return True


SIZED_DEFAULT_FONT = _has_sized_default_font()


@functools.cache
def skimage_module():
    try:
        import skimage
        import skimage.data
    except ImportError:
        raise DataError(
            "the synthetic photo sets are cut from scikit-image's bundled photos, and "
            "scikit-image is not installed; pip install 'scikit-image>=0.24'"
        ) from None
    return skimage


def downscale(image: np.ndarray, scale: int = SR_SCALE) -> np.ndarray:
    """The LR of an (H, W, 3) uint8 image: PIL bicubic with antialiasing, H/scale x W/scale."""
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize(
        (width // scale, height // scale), Image.Resampling.BICUBIC
    )
    return np.asarray(small)


def stylise(image: np.ndarray) -> np.ndarray:
    """A deterministic "painting" of an (H, W, 3) uint8 image: smoothed flat colour areas of a
    warm palette with dark outlines (integer PIL filters, so every machine gives the same)."""
    smooth = Image.fromarray(image).filter(ImageFilter.MedianFilter(5))
    step = 256 // PAINT_LEVELS
    levels = np.minimum(np.asarray(smooth) // step, PAINT_LEVELS - 1) * step + step // 2
    painted = np.clip(levels * np.asarray(PAINT_TINT), 0, 255)
    # edges of the grey, padded by its own border so that the frame is not taken for an edge
    grey = np.pad(np.asarray(smooth.convert("L")), 1, mode="edge")
    edges = np.asarray(Image.fromarray(grey).filter(ImageFilter.FIND_EDGES))[1:-1, 1:-1]
    painted[edges > PAINT_EDGE_THRESHOLD] *= PAINT_EDGE_DARKEN
    return np.round(painted).astype(np.uint8)


# --- watermarks -----------------------------------------------------------------------------


def add_watermark(
    clean: np.ndarray,
    rng: np.random.Generator,
    words=TRAIN_WORDS,
    logos=TRAIN_LOGOS,
    varied: bool = False,  # also random strings, procedural shapes, stretched/sheared/bold text
) -> tuple[np.ndarray, np.ndarray]:
    """(watermarked uint8 image, bool mask) for an (H, W, 3) uint8 image: a text or logo shape
    of random size, rotation, position, colour and opacity, alpha-blended. `varied=False` draws
    exactly what earlier versions drew from the same generator."""
    height, width = clean.shape[:2]
    for _ in range(10):  # a shape rotated thin can cover almost nothing: draw another
        coverage = _watermark_shape(rng, words, logos, min(height, width), varied)
        if (coverage > 0).sum() >= MIN_MASK_PIXELS:
            break
    top = int(rng.integers(0, height - coverage.shape[0] + 1))
    left = int(rng.integers(0, width - coverage.shape[1] + 1))
    placed = np.zeros((height, width), np.float64)
    placed[top : top + coverage.shape[0], left : left + coverage.shape[1]] = coverage
    if rng.random() < GREY_SHARE:
        colour = np.full(3, rng.integers(0, 256), np.float64)
    else:
        colour = rng.integers(0, 256, size=3).astype(np.float64)
    opacity = rng.uniform(*OPACITY)
    alpha = (opacity * placed)[..., None]
    marked = clean * (1.0 - alpha) + alpha * colour
    return np.round(marked).astype(np.uint8), placed > 0


def _watermark_shape(rng, words, logos, max_side: int, varied: bool = False) -> np.ndarray:
    """Coverage in [0, 1] of a rotated text or logo, at most `max_side` on each side."""
    if rng.random() < TEXT_SHARE:
        if varied:
            shape = Image.fromarray(_varied_text_coverage(rng, words))
        else:
            count = int(rng.integers(1, 3))  # one or two words
            text = " ".join(str(w) for w in rng.choice(words, size=count, replace=False))
            size = int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1))
            shape = Image.fromarray(text_coverage(text, size, bold=bool(rng.random() < 0.3)))
        angle = rng.uniform(*TEXT_ROTATION)
    else:
        if varied and rng.random() < PROCEDURAL_LOGO_SHARE:
            logo = Image.fromarray(_procedural_logo(str(rng.choice(PROCEDURAL_LOGOS)), rng))
        else:
            logo = Image.fromarray(_logo_coverage(str(rng.choice(logos)), rng))
        longest = int(rng.integers(LOGO_SIZES[0], LOGO_SIZES[1] + 1))
        factor = longest / max(logo.size)
        new_size = (max(1, round(logo.width * factor)), max(1, round(logo.height * factor)))
        shape = logo.resize(new_size, Image.Resampling.BICUBIC)
        angle = rng.uniform(*LOGO_ROTATION)
    shape = shape.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    if max(shape.size) > max_side:  # long text: shrink to fit, keeping the aspect
        factor = max_side / max(shape.size)
        shape = shape.resize(
            (max(1, int(shape.width * factor)), max(1, int(shape.height * factor))),
            Image.Resampling.BICUBIC,
        )
    coverage = np.asarray(shape, np.float64) / 255.0
    coverage[coverage < COVERAGE_THRESHOLD] = 0.0
    return coverage


def text_coverage(
    text: str,
    size: int,
    bold: bool = False,
    sized_font: bool | None = None,
    stroke: int | None = None,  # stroke width in pixels; None: 1 if bold else 0
):
    """(h, w) uint8 coverage of `text`, cropped to its ink. Pillow's default font at `size`
    where that exists (Pillow >= 10.1 with FreeType), else its bitmap font, resized so the ink
    is `size` pixels tall."""
    sized_font = SIZED_DEFAULT_FONT if sized_font is None else sized_font
    font = ImageFont.load_default(size=size) if sized_font else ImageFont.load_default()
    stroke = (1 if bold else 0) if stroke is None else stroke
    stroke = stroke if sized_font else 0  # bitmap fonts take no stroke
    # drawn on a roomy canvas and cropped: older Pillow cannot measure bitmap text (textbbox)
    em = size if sized_font else 11
    canvas = Image.new("L", ((len(text) + 2) * em * 2, em * 4), 0)
    ImageDraw.Draw(canvas).text((em, em), text, fill=255, font=font, stroke_width=stroke)
    canvas = canvas.crop(canvas.getbbox())
    if not sized_font:
        factor = size / canvas.height
        new_size = (max(1, round(canvas.width * factor)), max(1, round(canvas.height * factor)))
        canvas = canvas.resize(new_size, Image.Resampling.BICUBIC)
    return np.asarray(canvas)


def random_text(rng: np.random.Generator, avoid=TEST_WORDS) -> str:
    """Letters and digits, sometimes two runs of them; never containing a word of `avoid`
    (case-insensitive), so that the test split's words stay unseen."""
    while True:
        length = int(rng.integers(*RANDOM_TEXT_LENGTH))
        chars = rng.choice(list(RANDOM_TEXT_CHARS), size=length)
        if length > 4 and rng.random() < 0.3:
            chars[int(rng.integers(2, length - 1))] = " "
        text = "".join(chars)
        if not any(word.lower() in text.lower() for word in avoid):
            return text


def _varied_text_coverage(rng: np.random.Generator, words) -> np.ndarray:
    """A word of `words` or a random string, of random size, stroke, stretch and shear."""
    if rng.random() < RANDOM_TEXT_SHARE:
        text = random_text(rng)
    else:
        count = int(rng.integers(1, 3))
        text = " ".join(str(w) for w in rng.choice(words, size=count, replace=False))
    size = int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1))
    stroke = min(int(rng.integers(*TEXT_STROKES)), size // 8)  # small text: at most 1
    shape = Image.fromarray(text_coverage(text, size, stroke=stroke))
    stretched = max(1, round(shape.width * rng.uniform(*TEXT_STRETCH)))
    shape = shape.resize((stretched, shape.height), Image.Resampling.BICUBIC)
    shear = rng.uniform(*TEXT_SHEAR)
    extra = math.ceil(abs(shear) * shape.height)
    offset = -shear * shape.height if shear > 0 else 0.0
    shape = shape.transform(
        (shape.width + extra, shape.height),
        Image.Transform.AFFINE,
        (1, shear, offset, 0, 1, 0),
        resample=Image.Resampling.BICUBIC,
    )
    return np.asarray(shape.crop(shape.getbbox()))


def _procedural_logo(name: str, rng: np.random.Generator) -> np.ndarray:
    """(h, w) uint8 coverage of a new random shape: an irregular polygon, a rectangular frame
    or one large character."""
    if name == "glyph":
        char = str(rng.choice(list(GLYPH_CHARS)))
        return text_coverage(char, 120, stroke=int(rng.integers(0, 8)))
    canvas = Image.new("L", (200, 200), 0)
    draw = ImageDraw.Draw(canvas)
    if name == "polygon":
        count = int(rng.integers(5, 11))
        angles = np.sort(rng.uniform(0, 2 * math.pi, count))
        radii = rng.uniform(30, 95, count)
        points = zip(np.cos(angles) * radii + 100, np.sin(angles) * radii + 100, strict=True)
        draw.polygon([(float(x), float(y)) for x, y in points], fill=255)
    elif name == "frame":
        half_width, half_height = rng.uniform(40, 95), rng.uniform(25, 95)
        box = (100 - half_width, 100 - half_height, 100 + half_width, 100 + half_height)
        draw.rectangle(box, outline=255, width=int(rng.integers(8, 30)))
    else:
        raise ValueError(f"unknown procedural logo {name!r}")
    return np.asarray(canvas.crop(canvas.getbbox()))


def _logo_coverage(name: str, rng: np.random.Generator) -> np.ndarray:
    """(h, w) uint8 coverage of a logo shape; 255 = covered."""
    if name == "handwriting":  # dark pen strokes of a random square window of skimage's `text`
        page = _skimage_picture("text")
        left = int(rng.integers(0, page.shape[1] - page.shape[0] + 1))
        window = page[:, left : left + page.shape[0]]
        return np.where(window < 90, 255, 0).astype(np.uint8)
    if name == "horse":  # the silhouette (skimage's horse is black on white)
        return np.where(_skimage_picture("horse"), 0, 255).astype(np.uint8)
    if name == "skimage_logo":  # the disk of the scikit-image logo; its white S stays open
        white = _skimage_picture("logo")[..., :3].min(axis=-1) > 240
        return np.where(white, 0, 255).astype(np.uint8)
    canvas = Image.new("L", (200, 200), 0)
    draw = ImageDraw.Draw(canvas)
    if name == "disk":
        draw.ellipse((10, 10, 190, 190), fill=255)
    elif name == "ring":
        draw.ellipse((10, 10, 190, 190), outline=255, width=36)
    elif name == "star":
        points = [
            (100 + (90 if k % 2 == 0 else 38) * math.sin(k * math.pi / 5),
             100 - (90 if k % 2 == 0 else 38) * math.cos(k * math.pi / 5))
            for k in range(10)
        ]  # fmt: skip
        draw.polygon(points, fill=255)
    elif name == "triangle":
        draw.polygon([(100, 10), (190, 180), (10, 180)], fill=255)
    elif name == "cross":
        draw.rectangle((75, 10, 125, 190), fill=255)
        draw.rectangle((10, 75, 190, 125), fill=255)
    else:
        raise ValueError(f"unknown logo {name!r}")
    return np.asarray(canvas)


@functools.cache
def _skimage_picture(name: str) -> np.ndarray:
    return getattr(skimage_module().data, name)()


# --- inpainting masks -----------------------------------------------------------------------


def inpainting_mask(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size) uint8 mask, 1 = missing: a centre hole, a random box or free-form strokes."""
    check_choice("mask kind", kind, MASK_KINDS)
    mask = np.zeros((size, size), np.uint8)
    if kind == "centre":
        start = (size - CENTRE_HOLE) // 2
        mask[start : start + CENTRE_HOLE, start : start + CENTRE_HOLE] = 1
    elif kind == "box":
        top, left = (int(v) for v in rng.integers(0, size - BOX_HOLE + 1, size=2))
        mask[top : top + BOX_HOLE, left : left + BOX_HOLE] = 1
    else:
        while not STROKE_AREA[0] < (mask := _strokes(rng, size)).mean() < STROKE_AREA[1]:
            pass  # MMagic's rule: draw again until the hole covers 15-65 % of the image
    return mask


def _strokes(rng: np.random.Generator, size: int) -> np.ndarray:
    """MMagic's random_irregular_mask: from each of 4-9 random points, 1-5 brush segments of
    random angle, length and width (round caps, as cv2.line draws them)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for vertex in range(int(rng.integers(*STROKE_VERTICES))):
        y, x = (float(v) for v in rng.integers(0, size, size=2))
        segments = int(rng.integers(1, 6))
        angles = rng.integers(0, STROKE_MAX_ANGLE, size=segments) + 0.01
        lengths = rng.integers(*STROKE_LENGTH, size=segments)
        widths = rng.integers(*STROKE_WIDTH, size=segments)
        for angle, length, width in zip(angles, lengths, widths, strict=True):
            angle = 2 * math.pi - angle if vertex % 2 == 0 else angle
            end_y, end_x = int(y + length * math.sin(angle)), int(x + length * math.cos(angle))
            draw.line((x, y, end_x, end_y), fill=1, width=int(width))
            radius = int(width) / 2
            for cx, cy in ((x, y), (end_x, end_y)):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=1)
            y, x = end_y, end_x
    return np.asarray(canvas)

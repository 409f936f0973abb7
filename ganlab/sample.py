"""`ganlab-sample`: export samples of a trained checkpoint as .npz arrays or a .png picture (a grid
of images, or a scatter plot of 2D points over the data's modes); a translation model's outputs
for given images (`inputs=FOLDER|FILE.npz`) as an .npz or a folder of PNGs."""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid, save_image

from ganlab.checkpoint import load_model
from ganlab.cli import entry_point, positive_int
from ganlab.data.folder import IMAGE_EXTENSIONS
from ganlab.data.translation import open_image, to_tensor
from ganlab.errors import ConfigError
from ganlab.metrics.translation_eval import is_translation_model
from ganlab.plots import scatter_plot
from ganlab.speed import deterministic_kernels
from ganlab.utils.standing_stats import check_standing_stats, sampling_statistics_

OUTPUT_FORMATS = (".npz", ".png")
DEFAULT_NUM_SAMPLES = 64
NPZ_INPUT_KEYS = ("images", "masks")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(
            f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} was asked for, but CUDA is not available; use cpu")
    return device


def write_samples(
    path: Path,
    samples: torch.Tensor,
    labels: torch.Tensor | None,
    centers: torch.Tensor | None = None,  # 2D points: the real modes, marked on the plot
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        arrays = {"samples": samples.cpu().numpy().astype(np.float32)}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy().astype(np.int64)
        np.savez(path, **arrays)
    elif samples.dim() == 4:
        grid = make_grid(
            samples.cpu(),
            nrow=max(1, int(len(samples) ** 0.5)),
            normalize=True,
            value_range=(-1, 1),
        )
        save_image(grid, path)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        scatter_plot(samples, centers).save(path)
    else:
        raise ConfigError(
            f"out={str(path)!r}: samples of shape {tuple(samples.shape[1:])} are not images; "
            "write them to a .npz file (a .png holds images or 2D points)"
        )


def _labels(given, num_samples: int, model) -> list[int] | None:
    if given is None:
        # a conditional model still draws each sample for some label: write which one
        return model.sample_labels(num_samples).tolist() if model.conditional else None
    labels = [int(label) for label in given]
    if not model.conditional:
        raise ConfigError(
            f"labels={labels} were given, but the checkpoint's model ({type(model).__name__}) "
            "is unconditional; leave labels=null, or sample a conditional model (e.g. model=cgan)"
        )
    if not labels:
        raise ConfigError("labels=[] is empty; give one label per sample, or leave labels=null")
    # A short list repeats, so labels=[3,7] num_samples=6 gives 3,7,3,7,3,7.
    return [labels[i % len(labels)] for i in range(num_samples)]


def _truncation(psi, model) -> dict[str, float]:
    """`truncation=` for models whose `sample` takes it (StyleGAN2's psi, BigGAN's resampling
    threshold); refused elsewhere."""
    if psi is None:
        return {}
    if isinstance(psi, bool) or not isinstance(psi, int | float) or psi < 0:
        raise ConfigError(f"truncation={psi!r} must be a number >= 0 (1: off), or null")
    if "truncation" not in inspect.signature(model.sample).parameters:
        raise ConfigError(
            f"truncation={psi} was given, but the checkpoint's model ({type(model).__name__}) "
            "has no truncation; leave truncation=null (it applies to model=stylegan2 and "
            "model=biggan)"
        )
    return {"truncation": float(psi)}


def sample(cfg: DictConfig) -> Path:
    out = Path(str(cfg.out))
    batch_size = positive_int(cfg, "batch_size")
    if cfg.seed is not None and (isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int)):
        raise ConfigError(f"seed={cfg.seed!r} must be an integer, or null for fresh latents")
    model, run_config = load_model(cfg.ckpt_path, pick_device(str(cfg.device)))
    if is_translation_model(model):
        return translate_inputs(cfg, model, run_config, out, batch_size)
    if cfg.get("inputs") is not None:
        raise ConfigError(
            f"inputs={cfg.inputs!r} was given, but the checkpoint's model ({type(model).__name__}) "
            "draws samples from latents and takes no images; leave inputs out and set "
            "num_samples=N"
        )
    if out.suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"out={str(out)!r} must end in one of {OUTPUT_FORMATS}")
    if cfg.num_samples is None:
        num_samples = DEFAULT_NUM_SAMPLES
    else:
        num_samples = positive_int(cfg, "num_samples")
    labels = _labels(cfg.labels, num_samples, model)
    standing_stats = check_standing_stats(cfg.get("standing_stats"))
    if standing_stats is not None:  # BatchNorm statistics of the sampled generator, recomputed
        seed = 0 if cfg.seed is None else cfg.seed
        sampling_statistics_(model, standing_stats, batch_size, bool(cfg.use_ema), seed)
    # The same seed gives bit-identical samples on the same device (cuDNN picks its algorithms
    # freely otherwise); across devices they are close, not equal.
    with deterministic_kernels(model.device):
        samples = model.sample(
            num_samples,
            labels=labels,
            seed=cfg.seed,
            use_ema=bool(cfg.use_ema),
            batch_size=batch_size,
            **_truncation(cfg.get("truncation"), model),
        )
    label_tensor = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    centers = None
    if out.suffix == ".png" and samples.dim() == 2:
        # the run's data config rebuilds the mixture (cheap: toy data is drawn at setup only)
        centers = getattr(instantiate(run_config.data), "centers", None)
    write_samples(out, samples, label_tensor, centers)
    print(f"wrote {len(samples)} samples of shape {tuple(samples.shape[1:])} to {out.resolve()}")
    return out


# ---------------------------------------------------------------------- translation models
def translate_inputs(
    cfg: DictConfig, model, run_config: DictConfig, out: Path, batch_size: int
) -> Path:
    """`model`'s outputs for the images of `cfg.inputs`, written to `out` (.npz or a folder)."""
    name = type(model).__name__
    for key in ("num_samples", "labels", "truncation", "standing_stats"):
        if cfg.get(key) is not None:
            raise ConfigError(
                f"{key}={cfg.get(key)!r} does not apply to {name}, which translates the given "
                "images (one output per input); leave it out"
            )
    if cfg.get("inputs") is None:
        raise ConfigError(
            f"the checkpoint's model ({name}) translates images: give them as inputs=FOLDER "
            "(PNG/JPG files) or inputs=FILE.npz (`images` float32 (N,C,H,W) in [-1,1], and "
            "`masks` (N,1,H,W), 1 = missing, for inpainting)"
        )
    to_folder = out.suffix == "" or out.is_dir()
    if out.suffix != ".npz" and not to_folder:
        raise ConfigError(
            f"out={str(out)!r}: a translation model writes a .npz (out=outputs.npz) or one PNG "
            "per input into a folder (out=outputs/, a name without a suffix)"
        )
    channels = int(OmegaConf.select(run_config, "data.channels", default=None) or 3)
    masks_needed = needs_masks(model)
    images, masks, names = read_inputs(str(cfg.inputs), channels, masks_needed)
    for (height, width), indices in groups_by_size(images).items():
        try:
            model.check_input_size(height, width)
        except ConfigError as err:
            shown = ", ".join(names[i] if names else f"images[{i}]" for i in indices[:3])
            raise ConfigError(f"inputs={cfg.inputs!r}: {shown}: {err}") from err
    outputs: list[torch.Tensor | None] = [None] * len(images)
    # test_mode "train" keeps dropout on: its noise is drawn from `seed`
    with (
        torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []),
        deterministic_kernels(model.device),
    ):
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        for indices in groups_by_size(images).values():
            batch = torch.stack([images[i] for i in indices])
            batch_masks = None if masks is None else torch.stack([masks[i] for i in indices])
            translated = model.translate(
                batch, batch_masks, use_ema=bool(cfg.use_ema), batch_size=batch_size
            ).cpu()
            for i, output in zip(indices, translated, strict=True):
                outputs[i] = output
    if to_folder:
        width = len(str(len(outputs) - 1))
        files = [Path(n).stem + ".png" for n in names] or [
            f"{i:0{width}d}.png" for i in range(len(outputs))
        ]
        write_pngs(out, outputs, files)
    else:
        write_npz(out, outputs, names or None)
    shapes = sorted({tuple(o.shape) for o in outputs})
    print(
        f"wrote {len(outputs)} translated images of shape "
        f"{' or '.join(str(s) for s in shapes)} to {out.resolve()}"
    )
    return out


def needs_masks(model) -> bool:
    """Whether the model's generator takes a hole mask with each image (inpainting): such a
    model refuses to build its condition without one."""
    try:
        model.make_condition(torch.zeros(1, 1, 1, 1, device=model.device), None)
    except ConfigError:
        return True
    return False


def read_inputs(
    inputs: str, channels: int, masks_needed: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, list[str]]:
    """Images (C, H, W) in [-1, 1], masks (1, H, W) or None, and the file names of a folder's
    images ([] for an .npz)."""
    path = Path(inputs).expanduser()
    accepted = (
        "a folder of images (PNG/JPG) or an .npz with `images` float32 (N,C,H,W) in [-1,1] "
        "(and `masks` (N,1,H,W), 1 = missing, for inpainting)"
    )
    if path.is_dir():
        if masks_needed:
            raise ConfigError(
                f"inputs={inputs!r} is a folder of images, but the model fills holes and needs "
                "their masks: give inputs=FILE.npz with `images` (N,C,H,W) and `masks` "
                "(N,1,H,W), 1 = missing"
            )
        images, names = read_folder(path, inputs, channels)
        return images, None, names
    if not path.is_file():
        raise ConfigError(f"inputs={inputs!r} does not exist; give {accepted}")
    if path.suffix != ".npz":
        raise ConfigError(
            f"inputs={inputs!r} is neither a folder nor an .npz file; give {accepted}"
        )
    images, masks = read_npz(path, inputs, channels, masks_needed)
    return list(images), masks, []


def read_folder(path: Path, inputs: str, channels: int) -> tuple[list[torch.Tensor], list[str]]:
    files = sorted(
        f
        for f in path.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ConfigError(
            f"inputs={inputs!r} contains no images; accepted extensions (any case): "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    stems = [f.stem for f in files]
    clashes = sorted({f.name for f in files if stems.count(f.stem) > 1})
    if clashes:
        raise ConfigError(
            f"inputs={inputs!r}: {', '.join(clashes)} would write the same output file "
            "(<name>.png); rename them so that their names without extension differ"
        )
    mode = "L" if channels == 1 else "RGB"
    return [to_tensor(open_image(f, mode)) for f in files], [f.name for f in files]


def read_npz(
    path: Path, inputs: str, channels: int, masks_needed: bool
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"inputs={inputs!r} is not an .npz archive (numpy.savez writes one, e.g. "
            "np.savez('inputs.npz', images=images))"
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"inputs={inputs!r} cannot be read as an .npz file ({err})") from err
    unknown = sorted(set(found) - set(NPZ_INPUT_KEYS))
    if "images" not in found or unknown:
        raise ConfigError(
            f"inputs={inputs!r} holds arrays {sorted(found)}; accepted: `images` (required, "
            "float32 (N,C,H,W) in [-1,1]) and `masks` ((N,1,H,W), 1 = missing)"
        )
    images = found["images"]
    if images.ndim != 4 or images.shape[1] != channels or len(images) == 0:
        raise ConfigError(
            f"inputs={inputs!r}: `images` has shape {images.shape}; the model takes "
            f"(N, {channels}, H, W) with N >= 1"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise ConfigError(
            f"inputs={inputs!r}: `images` has dtype {images.dtype}; it must be float32 in "
            "[-1, 1] (8-bit images: x / 127.5 - 1)"
        )
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1 or high > 1:
        raise ConfigError(
            f"inputs={inputs!r}: `images` range from {low} to {high}; they must be finite and "
            "in [-1, 1] (8-bit images: x / 127.5 - 1)"
        )
    tensors = torch.from_numpy(images.astype(np.float32))
    if "masks" not in found:
        if masks_needed:
            raise ConfigError(
                f"inputs={inputs!r} has no `masks`; the model fills holes and needs one mask "
                "per image: `masks` (N,1,H,W), 1 = missing"
            )
        return tensors, None
    masks = found["masks"]
    expected = (len(images), 1, *images.shape[2:])
    if masks.shape != expected:
        raise ConfigError(
            f"inputs={inputs!r}: `masks` has shape {masks.shape}; expected {expected}, one "
            "(1, H, W) mask per image"
        )
    if masks.dtype.kind not in "biuf" or not np.isin(masks, (0, 1)).all():
        raise ConfigError(f"inputs={inputs!r}: `masks` must hold 0 (known) or 1 (missing) only")
    return tensors, list(torch.from_numpy(masks.astype(np.float32)))


def groups_by_size(images: list[torch.Tensor]) -> dict[tuple[int, int], list[int]]:
    """Indices of the images of each (height, width), in input order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape[-2:]), []).append(index)
    return groups


def write_npz(path: Path, outputs: list[torch.Tensor], names: list[str] | None) -> None:
    shapes = sorted({tuple(o.shape) for o in outputs})
    if len(shapes) > 1:
        raise ConfigError(
            f"out={str(path)!r}: the inputs' sizes differ, so the outputs do ({shapes}), and one "
            ".npz array cannot hold them; write one PNG per input with out=FOLDER"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": torch.stack(outputs).numpy().astype(np.float32)}
    if names is not None:
        arrays["names"] = np.array(names)
    np.savez(path, **arrays)


def write_pngs(folder: Path, outputs: list[torch.Tensor], names: list[str]) -> None:
    """8-bit PNGs (gray stays gray), rounded as torchvision's save_image rounds."""
    folder.mkdir(parents=True, exist_ok=True)
    for output, name in zip(outputs, names, strict=True):
        levels = ((output.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        to_pil_image(levels).save(folder / name)


@entry_point("ganlab-sample", "sample")
def main(cfg: DictConfig) -> None:
    sample(cfg)


if __name__ == "__main__":
    main()

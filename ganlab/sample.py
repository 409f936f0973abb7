"""`ganlab-sample`: export samples of a trained checkpoint as .npz arrays or a .png picture (a grid
of images, or a scatter plot of 2D points over the data's modes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchvision.utils import make_grid, save_image

from ganlab.checkpoint import load_model
from ganlab.cli import entry_point, positive_int
from ganlab.errors import ConfigError
from ganlab.plots import scatter_plot

OUTPUT_FORMATS = (".npz", ".png")


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


def sample(cfg: DictConfig) -> Path:
    out = Path(str(cfg.out))
    if out.suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"out={str(out)!r} must end in one of {OUTPUT_FORMATS}")
    num_samples, batch_size = positive_int(cfg, "num_samples"), positive_int(cfg, "batch_size")
    if cfg.seed is not None and (isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int)):
        raise ConfigError(f"seed={cfg.seed!r} must be an integer, or null for fresh latents")
    model, run_config = load_model(cfg.ckpt_path, pick_device(str(cfg.device)))
    labels = _labels(cfg.labels, num_samples, model)
    samples = model.sample(
        num_samples,
        labels=labels,
        seed=cfg.seed,
        use_ema=bool(cfg.use_ema),
        batch_size=batch_size,
    )
    label_tensor = torch.as_tensor(labels, dtype=torch.long) if labels is not None else None
    centers = None
    if out.suffix == ".png" and samples.dim() == 2:
        # the run's data config rebuilds the mixture (cheap: toy data is drawn at setup only)
        centers = getattr(instantiate(run_config.data), "centers", None)
    write_samples(out, samples, label_tensor, centers)
    print(f"wrote {len(samples)} samples of shape {tuple(samples.shape[1:])} to {out.resolve()}")
    return out


@entry_point("ganlab-sample", "sample")
def main(cfg: DictConfig) -> None:
    sample(cfg)


if __name__ == "__main__":
    main()

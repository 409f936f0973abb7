"""Finding, validating and loading ganlab checkpoints outside of training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ganlab.checkpoint_io import UnreadableCheckpointError, load_safely, previous_checkpoint
from ganlab.errors import CheckpointError

log = logging.getLogger("ganlab")


def existing_checkpoint(path: str | Path) -> Path:
    ckpt = Path(str(path)).expanduser()
    if not ckpt.is_file():
        where = "is a directory" if ckpt.is_dir() else "does not exist"
        raise CheckpointError(
            f"ckpt_path={str(path)!r} {where}; give the path of a .ckpt file written by "
            "ganlab-train, e.g. runs/train/<model>_<data>/<time>/checkpoints/last.ckpt"
        )
    return ckpt


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a ganlab run, with its config under ckpt['ganlab']['config']."""
    ckpt = load_safely(existing_checkpoint(path))
    config = ckpt.get("ganlab", {}).get("config") if isinstance(ckpt, dict) else None
    if not config or "state_dict" not in ckpt:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is not a ganlab checkpoint (it carries no ganlab run "
            "config); give a checkpoint written by ganlab-train"
        )
    return ckpt


def checkpoint_to_resume(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file to resume from and its contents: `path`, or, when `path` cannot be
    read (a write was interrupted), the previous checkpoint that was kept beside it."""
    try:
        return existing_checkpoint(path), read_checkpoint(path)
    except UnreadableCheckpointError as err:
        previous = previous_checkpoint(existing_checkpoint(path))
        if not previous.is_file():
            raise
        ckpt = read_checkpoint(previous)
        log.warning(
            "%s cannot be read (%s); resuming from the previous checkpoint %s instead",
            path,
            str(err.__cause__ or err).split(". ")[0] or "the file is empty",
            previous,
        )
        return previous, ckpt


def check_resumable(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint that holds weights but no training state (a `ganlab-interpolate`
    blend): Lightning would fail deep inside the restore with a KeyError."""
    missing = [key for key in ("optimizer_states", "loops") if key not in ckpt]
    if not missing:
        return
    made_by = "a ganlab-interpolate blend" if "interpolation" in ckpt["ganlab"] else "weights only"
    raise CheckpointError(
        f"ckpt_path={str(path)!r} holds no training state to resume ({made_by}: no "
        f"{' or '.join(missing)}); sample or score it with ganlab-sample/ganlab-eval "
        "ckpt_path=..., or start a new run from its generator with model.init_from=... (the "
        "super-resolution models)"
    )


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the LightningModule of a run from its checkpoint, weights loaded, in eval mode;
    returns (model, the run's config)."""
    return model_from_checkpoint(read_checkpoint(path), device)


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu"):
    config = OmegaConf.create(ckpt["ganlab"]["config"])
    model = instantiate(config.model)
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)
    model._pending_rng_states = None  # sampling draws from its own seeds, not the run's RNG
    return model.to(device).eval(), config

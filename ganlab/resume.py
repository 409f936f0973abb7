"""Resuming with a changed config: apply what can change mid-run, refuse the rest.

A resumed run restores its networks, optimizers and random streams from the checkpoint, so a
setting that shaped them (architecture, loss, data shapes, seed) cannot change on resume; the
learning rates, the trainer's budget, loggers, callbacks, paths and data loading can.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from ganlab.errors import ConfigError

log = logging.getLogger("ganlab")

# Settings a resumed run can take from the new config: keys equal to, or under, these.
APPLICABLE_ON_RESUME = (
    "ckpt_path",
    "task_name",
    "tags",
    "optimized_metric",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hparams_search",
    "data.num_workers",
    "data.root",
    "data.download",
    "data.pin_memory",
    "model.g_optimizer.lr",
    "model.d_optimizer.lr",
    "model.weight_growth_warning",  # a log threshold: read again at every start
)


class _Absent:
    """The value of a key that one of the two configs does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"n_critic": 5}} -> {"model.n_critic": 5}: one value per setting (lists and
    empty dicts are values), for comparing configs and as filterable columns in run tables."""
    if not isinstance(config, dict) or not config:
        return {prefix.rstrip("."): config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (old value, new value) for every setting that differs."""
    old_flat, new_flat = flatten(old), flatten(new)
    return {
        key: (old_flat.get(key, ABSENT), new_flat.get(key, ABSENT))
        for key in sorted(old_flat.keys() | new_flat.keys())
        if old_flat.get(key, ABSENT) != new_flat.get(key, ABSENT)
    }


def applicable(key: str, change: tuple[Any, Any]) -> bool:
    if key.endswith("_optimizer.lr") and not all(isinstance(v, int | float) for v in change):
        return False  # a learning rate that appears or disappears changes the optimizer
    return any(key == name or key.startswith(f"{name}.") for name in APPLICABLE_ON_RESUME)


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())


def check_resume_changes(
    stored: dict[str, Any], composed: dict[str, Any], ckpt_path: Any
) -> dict[str, tuple[Any, Any]]:
    """The changes a resume from `ckpt_path` applies (logged on one line); raises ConfigError
    listing every change that it cannot apply."""
    changes = config_changes(stored, composed)
    refused = {key: change for key, change in changes.items() if not applicable(key, change)}
    if refused:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} was trained with other settings than these, and a "
            f"resumed run cannot change them: {_describe(refused)}. Resume without those "
            "overrides, or start a new run (no ckpt_path) to change them; on resume only "
            "learning rates (model.g_optimizer.lr, model.d_optimizer.lr), trainer.*, logger, "
            "callbacks, paths, tags and data loading (data.num_workers, data.root, "
            "data.download) can change"
        )
    shown = {key: change for key, change in changes.items() if key != "ckpt_path"}
    if shown:
        log.info("resuming %s with changed settings: %s", ckpt_path, _describe(shown))
    return changes


class ApplyResumedLearningRates(pl.Callback):
    """Sets the new learning rates on the optimizers Lightning restored from the checkpoint
    (their stored state carries the old ones), keeping any scheduler's progress: the current
    rate scales by new/old and the scheduler's base rate becomes the new one."""

    def __init__(self, learning_rates: dict[str, tuple[float, float]]):
        self.learning_rates = learning_rates  # "g"/"d" -> (old lr, new lr)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        players = {"g": pl_module.generator, "d": pl_module.discriminator}
        for player, (old, new) in self.learning_rates.items():
            params = {id(p) for p in players[player].parameters()}
            for optimizer in trainer.optimizers:
                if any(id(p) in params for g in optimizer.param_groups for p in g["params"]):
                    _set_learning_rate(optimizer, trainer, float(old), float(new))


def _set_learning_rate(
    optimizer: torch.optim.Optimizer, trainer: pl.Trainer, old: float, new: float
) -> None:
    for group in optimizer.param_groups:
        # Under a schedule the current rate differs from the base rate: scale it.
        group["lr"] = new if group["lr"] == old or old == 0 else group["lr"] * new / old
        group["initial_lr"] = new
    for config in trainer.lr_scheduler_configs:
        if config.scheduler.optimizer is optimizer:
            config.scheduler.base_lrs = [new] * len(optimizer.param_groups)
            config.scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def resume_callbacks(changes: dict[str, tuple[Any, Any]]) -> list[pl.Callback]:
    """What a resume with `changes` adds to the trainer's callbacks."""
    rates = {
        player: changes[f"model.{player}_optimizer.lr"]
        for player in ("g", "d")
        if f"model.{player}_optimizer.lr" in changes
    }
    return [ApplyResumedLearningRates(rates)] if rates else []

"""SRGAN / ESRGAN (Ledig et al., 2017; Wang et al., 2018) as BasicSR trains them, in two stages:

1. PSNR-oriented: the generator alone with L1 (`gan_weight: 0`, `perceptual_weight: 0`).
2. GAN: G initialised from stage 1 (`init_from: PATH`, the generator's weights only), then
   `l1_weight` * L1 + `perceptual_weight` * VGG19 conv5_4 L1 + `gan_weight` * GAN, where the GAN
   term is whatever `loss` is (ESRGAN: `ragan`, relativistic average; SRGAN: `bce`).

The discriminator judges the HR image alone (`conditional_d: false`: the LR source has another
size). Learning-rate schedules step per epoch, or per batch with `scheduler_interval: step`
(BasicSR's milestones are in iterations).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab.checkpoint import read_checkpoint
from ganlab.errors import CheckpointError, ConfigError
from ganlab.losses.perceptual import PerceptualLoss
from ganlab.models.translation import PairedTranslationGAN

log = logging.getLogger("ganlab")

SCHEDULER_INTERVALS = ("epoch", "step")


class SRGAN(PairedTranslationGAN):
    """Super-resolution GAN: PairedTranslationGAN plus a perceptual term, stage-1 initialisation
    and per-batch learning-rate schedules; `model=srgan` (MSRResNet), `model=esrgan` (RRDBNet)."""

    def __init__(
        self,
        *args: Any,
        # A PerceptualLoss, or a factory of one (`_partial_: true`), built when training starts:
        # sampling a checkpoint, or a run with perceptual_weight 0, needs no VGG19 weights file.
        perceptual: PerceptualLoss | Callable[[], nn.Module] | nn.Module | None = None,
        perceptual_weight: float = 1.0,  # 0: no perceptual term (stage 1)
        init_from: str | None = None,  # stage-1 checkpoint whose generator starts this run
        scheduler_interval: str = "epoch",  # "step": schedulers step after every batch
        **kwargs: Any,
    ):
        kwargs.setdefault("conditional_d", False)
        super().__init__(*args, **kwargs)
        if perceptual_weight < 0:
            raise ConfigError(f"model.perceptual_weight={perceptual_weight} must be >= 0")
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ConfigError(
                f"model.scheduler_interval={scheduler_interval!r} is not supported; accepted: "
                f"{SCHEDULER_INTERVALS}"
            )
        if perceptual_weight > 0 and perceptual is None:
            raise ConfigError(
                f"model.perceptual_weight={perceptual_weight} needs model.perceptual (a "
                "ganlab.losses.PerceptualLoss); set model.perceptual_weight=0 to train without "
                "the perceptual loss"
            )
        self.perceptual_weight = perceptual_weight
        injected = isinstance(perceptual, nn.Module)
        self.perceptual = perceptual if injected and perceptual_weight > 0 else None
        self._perceptual_factory = None if injected or perceptual_weight == 0 else perceptual
        self.init_from = init_from
        self.scheduler_interval = scheduler_interval
        self._resumed = False  # a resumed run keeps its own generator, not stage 1's

    # ------------------------------------------------------------------ losses
    def build_perceptual(self) -> nn.Module | None:
        """The perceptual loss, built from its factory on first use (reading the VGG19 file)."""
        if self.perceptual is None and self._perceptual_factory is not None:
            self.perceptual = self._perceptual_factory().to(self.device)
            self._perceptual_factory = None
        return self.perceptual

    def setup(self, stage: str) -> None:
        if stage == "fit":  # before Lightning moves the model to its device and wraps it
            self.build_perceptual()  # (and before the training RNG streams are seeded)
        super().setup(stage)

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor, cond: Any):
        loss, stats = super().reconstruction_loss(fake, real, cond)
        if self.build_perceptual() is not None:
            perceptual = self.perceptual(fake, real)
            stats["train/g_perceptual"] = perceptual
            loss = loss + self.perceptual_weight * perceptual
        return loss, stats

    # ------------------------------------------------------------------ schedules
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        super().training_step(batch, batch_idx)
        if self.scheduler_interval == "step":
            step_schedulers(self.lr_schedulers())

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            super().on_train_epoch_end()

    # ------------------------------------------------------------------ stage-1 initialisation
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._resumed = True

    def on_fit_start(self) -> None:
        # After a resumed run's state is restored (Lightning restores before on_fit_start), so
        # `init_from` only starts fresh runs; sampling a checkpoint never reads it.
        if self.init_from and not self._resumed:
            self.load_generator(self.init_from)
        elif self.gan_weight > 0 and not self._resumed:
            log.warning(
                "model.init_from is null: this GAN stage (model.gan_weight=%g) starts from "
                "random weights, not from a PSNR-oriented stage 1; train stage 1 first "
                "(model.gan_weight=0 model.perceptual_weight=0 model.l1_weight=1) and pass "
                "model.init_from=<its run>/checkpoints/last.ckpt",
                self.gan_weight,
            )
        super().on_fit_start()

    def load_generator(self, path: str | Path) -> None:
        """Set G (and its EMA copy) to the generator of the ganlab checkpoint at `path`: its EMA
        copy when it has one (what it samples and is scored with), else its generator. Nothing
        else is taken: not D, optimizers, schedules or progress."""
        weights, source = stage_one_generator(path, self.generator)
        self.generator.load_state_dict(weights)
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(weights)
        log.info("generator initialised from %s of %s (model.init_from)", source, path)


def step_schedulers(schedulers: Any) -> None:
    """Step what `LightningModule.lr_schedulers()` returned: None, one scheduler or a list."""
    if schedulers is None:
        return
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        scheduler.step()


def stage_one_generator(path: str | Path, generator: nn.Module) -> tuple[dict[str, Any], str]:
    """The generator weights of checkpoint `path` that fit `generator`, and which copy they are
    ("generator_ema" or "generator"); CheckpointError for anything else."""
    file = Path(str(path)).expanduser()
    if not file.is_file():
        where = "is a directory" if file.is_dir() else "does not exist"
        raise CheckpointError(
            f"model.init_from={str(path)!r} {where}; give the checkpoint of a stage-1 run "
            "(PSNR-oriented: model.gan_weight=0 model.perceptual_weight=0), e.g. "
            "runs/train/<model>_<data>/<time>/checkpoints/last.ckpt, or model.init_from=null to "
            "start from random weights"
        )
    try:
        ckpt = read_checkpoint(file)
    except CheckpointError as err:  # its message names the file as ckpt_path=
        raise CheckpointError(str(err).replace("ckpt_path=", "model.init_from=", 1)) from err
    model_config = ckpt["ganlab"]["config"].get("model") or {}
    their_target = str((model_config.get("generator") or {}).get("_target_", "no generator"))
    mine = type(generator).__name__
    if their_target.rpartition(".")[2] != mine:
        raise CheckpointError(
            f"model.init_from={str(path)!r} is a checkpoint of {model_config.get('_target_')} "
            f"whose generator is {their_target}, but this model's generator is {mine}; give a "
            "stage-1 checkpoint of the same model (the same model=... with model.gan_weight=0)"
        )
    state = ckpt["state_dict"]
    source = "generator_ema" if any(k.startswith("generator_ema.") for k in state) else "generator"
    prefix = f"{source}."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    problem = state_dict_mismatch(weights, generator.state_dict())
    if problem:
        raise CheckpointError(
            f"model.init_from={str(path)!r}: its {source} does not fit this model's {mine} "
            f"({problem}); the generator's settings (base_width, num_blocks, scale, channels) "
            "must be those of the stage-1 run"
        )
    return weights, source


def state_dict_mismatch(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], shown: int = 3
) -> str | None:
    """What differs between two state dicts' keys and shapes, naming the keys; None if nothing."""

    def listed(keys: list[str]) -> str:
        more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    parts = [
        f"{label}: {listed(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("other shapes", reshaped),
        )
        if keys
    ]
    return "; ".join(parts) or None

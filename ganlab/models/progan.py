"""Progressive growing of GANs (Karras et al., 2018), trained as tkarras/progressive_growing_of_gans
does (train.py, loss.py; the Theano branch for CIFAR-10): WGAN-GP with a target gradient norm and
a drift term, growth by images seen in stable and fade phases, the reals faded like the
generator's output, and both Adam states reset whenever the phase changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.models.base import GANModule
from ganlab.networks.progan import GrowingNetwork, downsample, upsample


@dataclass(frozen=True)
class GrowthSchedule:
    """Level and alpha from images seen: `stable_images` at each level, then `fade_images`
    fading in the next one, until `max_level`. The official lod is max_level - level + 1 - alpha
    while fading (PG train.py TrainingSchedule)."""

    stable_images: int
    fade_images: int
    max_level: int

    @classmethod
    def from_kimg(cls, stable_kimg: float, fade_kimg: float, max_level: int) -> GrowthSchedule:
        if not (stable_kimg >= 0 and fade_kimg >= 0 and stable_kimg + fade_kimg > 0):
            raise ConfigError(
                f"model.stable_kimg={stable_kimg}, model.fade_kimg={fade_kimg}: both must be "
                ">= 0 and their sum > 0 (thousands of images per level)"
            )
        return cls(round(stable_kimg * 1000), round(fade_kimg * 1000), max_level)

    def at(self, images_seen: int) -> tuple[int, float]:
        """(level, alpha) for a step that starts after `images_seen` images."""
        phase, within = divmod(images_seen, self.stable_images + self.fade_images)
        if phase >= self.max_level:
            return self.max_level, 1.0
        if within <= self.stable_images:
            return phase, 1.0
        return phase + 1, (within - self.stable_images) / self.fade_images

    @staticmethod
    def phase(level: int, alpha: float) -> tuple[int, bool]:
        """What changes at a reset point: the level, and whether it is still fading in."""
        return level, alpha < 1.0


def fade_reals(images: torch.Tensor, level: int, alpha: float, max_level: int) -> torch.Tensor:
    """Full-resolution reals as the networks see them at (level, alpha): box-downsampled to the
    level's resolution, blended while fading with their own 2x coarser version (alpha = 0: the
    coarser one exactly), and upsampled back to full size (nearest), as PG train.py process_reals.
    """
    x = downsample(images, 2 ** (max_level - level))
    if level > 0 and alpha < 1.0:
        x = torch.lerp(upsample(downsample(x)), x, alpha)
    return upsample(x, 2 ** (max_level - level))


class ProGAN(GANModule):
    """ProGANGenerator and ProGANDiscriminator grown by images seen. Before every step the
    schedule sets the level and alpha of G, the EMA generator and D, and the full-resolution
    reals of the batch are faded to match; at every change of level or of fading (the start and
    the end of each fade) both optimizers' states are cleared. The loss is the config's:
    officially loss=wasserstein_drift (the critic loss plus 0.001 * E[D(real)^2]) and
    regularizers=gp with its `target` (750 for CIFAR-10). Samples come at the current level,
    upsampled to the data's size.

    The phase of the last step is checkpointed with the level and alpha, so a run resumed inside
    a fade continues at the same alpha and resets its optimizers at the same step.
    """

    def __init__(
        self,
        *args: Any,
        stable_kimg: float = 400.0,  # thousands of images at each level before the next fades in
        fade_kimg: float = 400.0,  # thousands of images over which a new level fades in
        reset_optimizers: bool = True,  # clear Adam's moments at each phase change (official)
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        for name in ("generator", "discriminator"):
            if not isinstance(getattr(self, name), GrowingNetwork):
                raise ConfigError(
                    f"model=progan needs growing networks, but model.{name} is a "
                    f"{type(getattr(self, name)).__name__}; use ganlab.networks.ProGANGenerator "
                    "and ganlab.networks.ProGANDiscriminator"
                )
        if self.generator.max_level != self.discriminator.max_level:
            raise ConfigError(
                f"the generator grows to {self.generator.resolution}x{self.generator.resolution} "
                f"but the discriminator to {self.discriminator.resolution}x"
                f"{self.discriminator.resolution}; both read ${{data.resolution}}"
            )
        self.schedule = GrowthSchedule.from_kimg(stable_kimg, fade_kimg, self.generator.max_level)
        self.reset_optimizers = reset_optimizers
        self.last_phase: tuple[int, bool] | None = None  # of the last step; None before any
        self.optimizer_resets = 0
        self.set_growth(*self.schedule.at(0))

    # ------------------------------------------------------------------ growth
    def growing_networks(self) -> list[nn.Module]:
        nets = [self.generator, self.discriminator, self.generator_ema]
        return [net for net in nets if net is not None]

    def set_growth(self, level: int, alpha: float) -> None:
        for network in self.growing_networks():
            network.set_growth(level, alpha)

    @property
    def level(self) -> int:
        return self.generator.level

    @property
    def alpha(self) -> float:
        return self.generator.alpha

    def advance_growth(self) -> None:
        """Level and alpha for the coming step; a new phase clears both optimizers' states."""
        level, alpha = self.schedule.at(self.images_seen)
        self.set_growth(level, alpha)
        phase = GrowthSchedule.phase(level, alpha)
        if self.last_phase is not None and phase != self.last_phase and self.reset_optimizers:
            self.reset_optimizer_states()
        self.last_phase = phase

    def reset_optimizer_states(self) -> None:
        """Adam starts afresh (moments and step counts), as the official reset_optimizer_state."""
        for optimizer in self.optimizers():
            optimizer.optimizer.state.clear()
        self.optimizer_resets += 1

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.advance_growth()
        real = fade_reals(batch[self.data_key], self.level, self.alpha, self.generator.max_level)
        super().training_step({**batch, self.data_key: real}, batch_idx)

    def log_step(self, stats: dict[str, torch.Tensor]) -> None:
        growth = {"train/level": self.level, "train/alpha": self.alpha}
        super().log_step({**stats, **{k: torch.tensor(float(v)) for k, v in growth.items()}})

    # ------------------------------------------------------------------ checkpoint state
    def growth_state(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "alpha": self.alpha,
            "images_seen": self.images_seen,
            "last_phase": None if self.last_phase is None else list(self.last_phase),
            "optimizer_resets": self.optimizer_resets,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ganlab"]["growth"] = self.growth_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        growth = (checkpoint.get("ganlab") or {}).get("growth")
        if growth is None:
            return
        self.set_growth(int(growth["level"]), float(growth["alpha"]))
        phase = growth["last_phase"]
        self.last_phase = None if phase is None else (int(phase[0]), bool(phase[1]))
        self.optimizer_resets = int(growth["optimizer_resets"])

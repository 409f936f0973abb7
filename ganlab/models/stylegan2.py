"""StyleGAN2 (Karras et al., 2020) training, after NVlabs/stylegan2-ada-pytorch (training/loss.py,
training_loop.py): lazy R1 and path-length regularization, the k/(k+1) Adam rescale, EMA by
half-life in images, truncation and style mixing. Conditional when the data has labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses.stylegan2 import PathLengthPenalty, lazy_regularization_adam
from ganlab.models.base import GANModule
from ganlab.models.conditional import ConditionalGAN
from ganlab.networks.stylegan2 import NOISE_MODES


def ema_beta(batch_images: int, half_life_kimg: float, rampup: float | None, images_seen: int):
    """EMA decay per G step for a half-life of `half_life_kimg` thousand images: 0.5 ** (batch /
    half_life_images). With `rampup`, the half-life is at most rampup * images seen so far, so the
    EMA starts as a copy of G (images_seen = 0 gives 0)."""
    half_life = half_life_kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    if half_life <= 0:
        return 0.0
    return 0.5 ** (batch_images / half_life)


class PathLengthRegularizer(nn.Module):
    """G regularizer: weight * (L - pl_mean)^2 on a batch shrunk by `batch_shrink`, with fresh
    latents, every `interval` G steps. `pl_mean` is a buffer (checkpointed)."""

    name = "pl"

    def __init__(self, weight: float, interval: int, decay: float, batch_shrink: int):
        super().__init__()
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"model.pl_interval={interval!r} must be an integer >= 1")
        if isinstance(batch_shrink, bool) or not isinstance(batch_shrink, int) or batch_shrink < 1:
            raise ConfigError(f"model.pl_batch_shrink={batch_shrink!r} must be an integer >= 1")
        self.weight, self.interval, self.batch_shrink = weight, interval, batch_shrink
        self.penalty = PathLengthPenalty(decay)

    def forward(self, module: StyleGAN2, real, fake, cond) -> torch.Tensor:
        count = max(1, real.shape[0] // self.batch_shrink)
        labels = None if cond is None else cond[:count]
        generator = module.generator
        ws = generator.styles(module.noise(count), labels)
        images = generator.synthesis(ws)
        return self.weight * self.penalty(images, ws).mean()


class StyleGAN2(GANModule):
    """StyleGAN2Generator and StyleGAN2Discriminator trained with any loss (the official one is
    loss=bce, the non-saturating logistic loss) and the D regularizers of the config (the
    official lazy R1: regularizers=r1). Style mixing happens inside the generator in train mode.

    Sampling uses `truncation_psi` and `noise_mode` (`sample(..., truncation=0.7)`); w_avg, the
    truncation centre, is a buffer of the mapping network and so is checkpointed, as is the
    path-length mean.
    """

    def __init__(
        self,
        *args: Any,
        num_classes: int | None = None,  # labels (from the data config); null: unconditional
        pl_weight: float = 2.0,  # path-length weight; 0 turns it off (the cifar spec)
        pl_decay: float = 0.01,
        pl_batch_shrink: int = 2,
        g_reg_interval: int | None = 4,  # path-length interval and G's Adam rescale; null: none
        d_reg_interval: int | None = 16,  # D's Adam rescale; must match lazy D regularizers
        ema_kimg: float | None = 10.0,  # EMA half-life in thousands of images; null: ema_decay
        ema_rampup: float | None = 0.05,  # half-life at most this fraction of images seen
        truncation_psi: float = 1.0,  # sampling: w_avg + psi (w - w_avg); 1: off
        noise_mode: str = "random",  # sampling: 'random', 'const' or 'none'
        # Before each optimizer step, gradients' NaN -> 0 and +-inf -> +-1e5, as officially.
        sanitize_gradients: bool = True,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.sanitize_gradients = sanitize_gradients
        self.num_classes = None if not num_classes else num_classes
        self.conditional = self.num_classes is not None
        if ema_kimg is not None and ema_kimg <= 0:
            raise ConfigError(f"model.ema_kimg={ema_kimg} must be > 0, or null to use ema_decay")
        if ema_rampup is not None and ema_rampup <= 0:
            raise ConfigError(f"model.ema_rampup={ema_rampup} must be > 0, or null for no ramp")
        self.ema_kimg, self.ema_rampup = ema_kimg, ema_rampup
        self.g_reg_interval, self.d_reg_interval = g_reg_interval, d_reg_interval
        lazy = {r.name: r.interval for r in self.d_regularizers if r.interval > 1}
        for name, interval in lazy.items():
            if interval != d_reg_interval:
                raise ConfigError(
                    f"regularizers.{name}.interval={interval} differs from "
                    f"model.d_reg_interval={d_reg_interval}, for which D's Adam is rescaled; "
                    "set them equal"
                )
        self.path_length = None
        if pl_weight:
            interval = g_reg_interval or 1
            self.path_length = PathLengthRegularizer(pl_weight, interval, pl_decay, pl_batch_shrink)
            self.g_regularizers = [self.path_length]
        self.set_sampling(truncation_psi, noise_mode)
        self._batch_images = 0  # images per step over all processes, for the EMA decay

    def set_sampling(self, truncation_psi: float, noise_mode: str) -> None:
        """Truncation and noise used whenever the generator runs in eval mode (sampling)."""
        if noise_mode not in NOISE_MODES:
            raise ConfigError(
                f"noise_mode={noise_mode!r} is not supported; accepted: {NOISE_MODES}"
            )
        self.truncation_psi, self.noise_mode = float(truncation_psi), noise_mode

    # ------------------------------------------------------------------ hooks
    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return ConditionalGAN.condition(self, batch) if self.conditional else None

    def generate(self, z: torch.Tensor, cond: Any = None, network: nn.Module | None = None):
        network = network or self.generator
        if network.training:
            return network(z, cond)
        return network(z, cond, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode)

    def discriminate(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.discriminator(self.augment(x) if self.augment is not None else x, cond)

    def _dummy_condition(self, batch_size: int) -> torch.Tensor | None:
        return self.sample_labels(batch_size).to(self.device) if self.conditional else None

    # ------------------------------------------------------------------ optimizers and EMA
    def configure_optimizers(self):
        optimizers, schedulers = super().configure_optimizers()
        for optimizer, interval in zip(
            optimizers, (self.g_reg_interval, self.d_reg_interval), strict=True
        ):
            for group in optimizer.param_groups:
                if "betas" not in group:
                    raise ConfigError(
                        f"the lazy-regularization rescale needs an Adam-like optimizer (lr, "
                        f"betas), got {type(optimizer).__name__}; use torch.optim.Adam, or set "
                        "model.g_reg_interval=null and model.d_reg_interval=null"
                    )
                group["lr"], group["betas"] = lazy_regularization_adam(
                    group["lr"], tuple(group["betas"]), interval
                )
        return optimizers, schedulers

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The official training loop's nan_to_num of every gradient (nan 0, +-inf +-1e5) before
        the step, so one bad batch cannot write NaN into the weights; then the base's hook."""
        if self.sanitize_gradients:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        torch.nan_to_num_(param.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        super().on_before_optimizer_step(optimizer)

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._batch_images = batch[self.data_key].shape[0] * self.trainer.world_size

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.generator_ema is None or self.ema_kimg is None:
            return super().update_ema()
        beta = ema_beta(self._batch_images, self.ema_kimg, self.ema_rampup, self.images_seen)
        ema_params = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.generator.parameters()), 1.0 - beta)
        for ema_buffer, buffer in zip(
            self.generator_ema.buffers(), self.generator.buffers(), strict=True
        ):
            ema_buffer.copy_(buffer)  # w_avg and noise constants are copied, as officially

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        labels: Sequence[int] | torch.Tensor | None = None,
        seed: int | None = None,
        use_ema: bool = True,
        batch_size: int = 256,
        start: int = 0,
        truncation: float | None = None,  # psi for this call; None: model.truncation_psi
        noise_mode: str | None = None,  # for this call; None: model.noise_mode
    ) -> torch.Tensor:
        saved = self.truncation_psi, self.noise_mode
        self.set_sampling(saved[0] if truncation is None else truncation, noise_mode or saved[1])
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            # The seed fixes the latents; the per-layer noise inputs are drawn from it too, so
            # the same seed (and batch size) gives the same images. The run's RNG is left alone.
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                return super().sample(n, labels, seed, use_ema, batch_size, start)
        finally:
            self.truncation_psi, self.noise_mode = saved

    def sample_labels(self, count: int, start: int = 0) -> torch.Tensor:
        return ConditionalGAN.sample_labels(self, count, start)

    def sample_conditions(self, n: int, labels, start: int = 0) -> torch.Tensor | None:
        if not self.conditional:
            return super().sample_conditions(n, labels, start)
        return ConditionalGAN.sample_conditions(self, n, labels, start)

    def check_labels(self, labels, n: int) -> torch.Tensor:
        return ConditionalGAN.check_labels(self, labels, n)

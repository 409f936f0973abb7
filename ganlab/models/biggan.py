"""BigGAN (Brock et al., 2019) training, after ajbrock/BigGAN-PyTorch (train_fns.py, utils.py) and
StudioGAN's CIFAR10/BigGAN.yaml: hinge loss (loss=hinge), `n_critic` D steps per G step, each on
a fresh real batch (one batch per D step), an EMA generator that copies G until `ema_start` G
steps, the orthogonal regularization added to G's gradients, truncation by resampling at
sampling. Standing statistics for evaluation are an option of ganlab-sample and ganlab-eval.
The G step trains on fresh latents and uniformly drawn labels (train_fns.py's `z_.sample_()`,
`y_.sample_()`), not on the fakes of the last D step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ganlab.errors import ConfigError
from ganlab.losses.orthogonal import add_orthogonal_gradient_, check_strength
from ganlab.models.conditional import ConditionalGAN
from ganlab.networks.biggan import check_truncation, truncated_latents, truncated_noise
from ganlab.speed import check_switch


def _check_ema_start(ema_start: int) -> int:
    if isinstance(ema_start, bool) or not isinstance(ema_start, int) or ema_start < 0:
        raise ConfigError(
            f"model.ema_start={ema_start!r} must be an integer >= 0: the number of G steps "
            "during which the EMA generator copies G (BigGAN: 1000; 0: average from the start)"
        )
    return ema_start


class BigGAN(ConditionalGAN):
    """BigGANGenerator and BigGANDiscriminator (or any conditional pair) trained as BigGAN.

    The EMA generator averages G's weights and BatchNorm running statistics with `ema_decay`
    once `ema_start` G steps were taken, and is an exact copy of G before, as BigGAN-PyTorch's
    `ema.update(itr)`. Spectral norm's power-iteration vectors are copied, not averaged:
    PyTorch's spectral norm uses them unnormalized in eval mode, so an average would change
    the normalized weights.

    `ortho_strength > 0` adds the orthogonal regularization's gradient (losses/orthogonal.py)
    to every G weight of 2 or more dimensions except the shared class embedding, between
    backward and the optimizer step (Lightning's `on_before_optimizer_step`), as the official
    `utils.ortho`; it never enters the logged loss.

    `truncation` (a threshold t > 0, or None) is the default of `sample`: every latent entry
    with |z| > t is redrawn, the paper's truncation trick.
    """

    def __init__(
        self,
        *args: Any,
        num_classes: int | None,  # number of labels (from the data config)
        ema_start: int = 1000,  # G steps during which the EMA copies G (BigGAN: 1000)
        ortho_strength: float = 0.0,  # orthogonal regularization; paper 1e-4, CIFAR recipes 0
        truncation: float | None = None,  # sampling default: redraw |z| > t; None: off
        # The G step on fresh latents and random labels (BigGAN-PyTorch); False: on the last D
        # step's fakes and the real labels, as other families.
        fresh_g_inputs: bool = True,
        **kwargs: Any,
    ):
        if kwargs.setdefault("ema_warmup", False):
            raise ConfigError(
                "model.ema_warmup=true ramps the EMA decay up from 0, but BigGAN's EMA copies G "
                "for model.ema_start G steps instead; set model.ema_warmup=false"
            )
        super().__init__(*args, num_classes=num_classes, **kwargs)
        self.ema_start = _check_ema_start(ema_start)
        self.ortho_strength = check_strength(ortho_strength)
        self.truncation = None if truncation is None else check_truncation(truncation)
        self._sampling_truncation: float | None = None  # set by `sample` for one call
        self.fresh_g_inputs = check_switch("model.fresh_g_inputs", fresh_g_inputs)

    # ------------------------------------------------------------------ G step
    def g_step_inputs(self, batch_size: int, z: torch.Tensor | None, cond: Any):
        """Fresh latents (the generator splits them hierarchically and pairs them with the
        shared embedding of the labels) and labels drawn uniformly over the classes, as
        BigGAN-PyTorch's G step. With a loss that compares fakes with reals (relativistic), the
        real batch's labels are kept, so that D judges reals and fakes of the same classes.
        `fresh_g_inputs=False`: None, the D step's fakes."""
        if not self.fresh_g_inputs:
            return None
        if getattr(self.loss, "needs_real_logits", False):
            return self.noise(batch_size), cond
        labels = torch.randint(self.num_classes, (batch_size,), device=self.device)
        return self.noise(batch_size), labels

    # ------------------------------------------------------------------ EMA
    def ema_decay_now(self) -> float:
        """The decay of this G step's EMA update: 0 (a copy) before `ema_start` G steps."""
        return 0.0 if self.g_steps < self.ema_start else float(self.ema_decay)

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.generator_ema is None:
            return
        weight = 1.0 - self.ema_decay_now()
        ema_params = list(self.generator_ema.parameters())
        params = list(self.generator.parameters())
        if weight == 1.0:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, weight)
        ema_modules = dict(self.generator_ema.named_modules())
        for name, module in self.generator.named_modules():
            ema_module = ema_modules[name]
            for key, buffer in module.named_buffers(recurse=False):
                ema_buffer = getattr(ema_module, key)
                averaged = isinstance(module, _BatchNorm) and buffer.is_floating_point()
                if averaged and weight != 1.0:  # running mean and variance, as BigGAN-PyTorch
                    ema_buffer.lerp_(buffer, weight)
                else:  # spectral norm's u and v, BatchNorm's batch counter
                    ema_buffer.copy_(buffer)

    # ------------------------------------------------------------------ orthogonal regularization
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.ortho_strength and self._is_generator_optimizer(optimizer):
            shared = getattr(self.generator, "shared", None)
            skip = list(shared.parameters()) if isinstance(shared, nn.Module) else []
            add_orthogonal_gradient_(self.generator, self.ortho_strength, skip=skip)
        super().on_before_optimizer_step(optimizer)

    def _is_generator_optimizer(self, optimizer: torch.optim.Optimizer) -> bool:
        generator_params = {id(p) for p in self.generator.parameters()}
        return any(id(p) in generator_params for g in optimizer.param_groups for p in g["params"])

    # ------------------------------------------------------------------ sampling
    def latents(self, count: int, seed: int, start: int = 0) -> torch.Tensor:
        if self._sampling_truncation is None:
            return super().latents(count, seed, start)
        return truncated_latents(count, self.latent_dim, self._sampling_truncation, seed, start)

    def noise(self, batch_size: int) -> torch.Tensor | None:
        if self._sampling_truncation is None:
            return super().noise(batch_size)
        z = truncated_noise(batch_size, self.latent_dim, self._sampling_truncation)
        return z.to(self.device)

    def sample(
        self,
        n: int,
        labels: Sequence[int] | torch.Tensor | None = None,
        seed: int | None = None,
        use_ema: bool = True,
        batch_size: int = 256,
        start: int = 0,
        truncation: float | None = None,  # threshold for this call; None: model.truncation
    ) -> torch.Tensor:
        threshold = self.truncation if truncation is None else check_truncation(truncation)
        self._sampling_truncation = threshold
        try:
            return super().sample(n, labels, seed, use_ema, batch_size, start)
        finally:
            self._sampling_truncation = None

    def truncation_protocol(self, truncation: float | None) -> str | None:
        """How `sample(truncation=...)` truncates, for a score's protocol; None: no truncation."""
        threshold = self.truncation if truncation is None else truncation
        if threshold is None:
            return None
        return f"resampling: every latent entry with |z| > {float(threshold)} redrawn"

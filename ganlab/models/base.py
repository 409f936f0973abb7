"""GANModule: the two-player training step that every ganlab family builds on."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from ganlab.errors import ConfigError, NonFiniteLossError
from ganlab.losses import AdversarialLoss
from ganlab.losses.regularizers import Regularizer
from ganlab.utils.rng import collect_rng_states, restore_rng_states

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class GANModule(pl.LightningModule):
    """One batch = one discriminator step, and every `n_critic` batches one generator step.

    The player not being updated is frozen (`toggled_optimizer`), so the generator step builds no
    gradients for the discriminator's weights. When a generator step follows, the fakes of the
    discriminator step are generated with a graph and reused, as in the textbook loop.

    Regularizers of the discriminator (gradient penalty, R1) and a differentiable augmentation
    of every discriminator input (DiffAugment) are options of any family.

    Variants override `d_loss`/`g_loss` (a different objective), `condition` (what the networks
    are conditioned on), `after_d_step` (e.g. weight clipping), or `training_step` when the
    dynamics differ.
    """

    conditional = False  # whether `sample` takes labels

    def __init__(
        self,
        generator: nn.Module,  # maps latents (B, latent_dim) to samples
        discriminator: nn.Module,  # maps samples to logits (B,)
        loss: AdversarialLoss,  # the (d_loss, g_loss) objective pair
        g_optimizer: OptimizerFactory,  # partial optimizer, completed with G's parameters
        d_optimizer: OptimizerFactory,  # partial optimizer, completed with D's parameters
        latent_dim: int,  # size of z
        n_critic: int = 1,  # discriminator steps per generator step
        ema_decay: float | None = 0.999,  # EMA generator decay; None turns the EMA off
        ema_warmup: bool = True,  # ramp the decay from 0 so early EMA weights are not stale
        data_key: str = "image",  # which batch entry holds the real samples
        g_scheduler: SchedulerFactory | None = None,  # optional, stepped once per epoch
        d_scheduler: SchedulerFactory | None = None,
        d_regularizers: Mapping[str, Regularizer] | Sequence[Regularizer] | None = None,
        augment: nn.Module | None = None,  # applied to every D input, real and fake
    ):
        super().__init__()
        if n_critic < 1:
            raise ConfigError(f"model.n_critic={n_critic} must be an integer >= 1")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay} must be in [0, 1), or null for no EMA")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.g_optimizer_factory = g_optimizer
        self.d_optimizer_factory = d_optimizer
        self.g_scheduler_factory = g_scheduler
        self.d_scheduler_factory = d_scheduler
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.ema_decay = ema_decay
        self.ema_warmup = ema_warmup
        self.data_key = data_key
        if isinstance(d_regularizers, Mapping):  # configs name them: {gp: ..., r1: ...}
            d_regularizers = list(d_regularizers.values())
        self.d_regularizers = [r for r in d_regularizers or [] if r is not None]
        self.augment = augment
        # A frozen copy: saved in checkpoints, moved with the module, never optimized.
        self.generator_ema = self._frozen_copy(generator) if ema_decay is not None else None
        # Progress in plain ints (no device sync to read them), checkpointed by on_save_checkpoint.
        # `global_step` counts both optimizers' steps; these count what each player did.
        self.images_seen = 0
        self.d_steps = 0
        self.g_steps = 0
        # The resolved run config; train.py sets it and checkpoints carry it.
        self.run_config: dict[str, Any] | None = None
        self._pending_rng_states: dict[str, Any] | None = None

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        clone = copy.deepcopy(module)
        clone.requires_grad_(False)
        return clone

    # ------------------------------------------------------------------ hooks for variants
    def condition(self, batch: dict[str, torch.Tensor]) -> Any:
        """What both networks are conditioned on; None for unconditional models."""
        return None

    def generate(self, z: torch.Tensor, cond: Any = None, network: nn.Module | None = None):
        return (network or self.generator)(z)

    def discriminate(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.discriminator(self.augment(x) if self.augment is not None else x)

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, cond: Any = None):
        """Discriminator loss and the logged statistics of this step."""
        real_logits = self.discriminate(real, cond).float()
        fake_logits = self.discriminate(fake, cond).float()
        loss = self.loss.d_loss(real_logits, fake_logits)
        stats = {"train/d_real": real_logits.mean(), "train/d_fake": fake_logits.mean()}
        return loss, stats

    def g_loss(self, fake: torch.Tensor, cond: Any = None):
        return self.loss.g_loss(self.discriminate(fake, cond).float()), {}

    # ------------------------------------------------------------------ training
    def noise(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.latent_dim, device=self.device)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        real = batch[self.data_key]
        cond = self.condition(batch)
        g_step_due = self.d_steps % self.n_critic == self.n_critic - 1

        z = self.noise(real.shape[0])
        with torch.set_grad_enabled(g_step_due):
            fake = self.generate(z, cond)

        with self.toggled_optimizer(d_opt):
            d_loss, stats = self.d_loss(real, fake.detach(), cond)
            self._check_finite(d_loss, "train/d_loss")
            penalty = self.d_regularization(real, fake.detach(), cond, stats)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss + penalty)
            d_opt.step()
            self.after_d_step()
        self.d_steps += 1
        stats["train/d_loss"] = d_loss

        if g_step_due:
            with self.toggled_optimizer(g_opt):
                g_loss, g_stats = self.g_loss(fake, cond)
                self._check_finite(g_loss, "train/g_loss")
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                g_opt.step()
            self.g_steps += 1
            self.update_ema()
            stats.update(g_stats, **{"train/g_loss": g_loss})

        self.images_seen += real.shape[0] * self.trainer.world_size
        self.log_dict({k: v.detach() for k, v in stats.items()}, prog_bar=False)

    def d_regularization(self, real, fake, cond, stats: dict[str, torch.Tensor]):
        """The regularizers due at this D step. Lazy ones (`interval` > 1, as StyleGAN2's R1)
        run every `interval` steps with their weight multiplied by `interval`."""
        total = torch.zeros((), device=real.device)
        for regularizer in self.d_regularizers:
            if self.d_steps % regularizer.interval == 0:
                term = regularizer(self, real, fake, cond)
                self._check_finite(term, f"train/{regularizer.name}")
                stats[f"train/{regularizer.name}"] = term
                total = total + regularizer.interval * term
        return total

    def after_d_step(self) -> None:
        """Called after each discriminator update, with D still the trainable player."""

    def _check_finite(self, loss: torch.Tensor, name: str) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{name} became {loss.item()} at epoch {self.current_epoch}, batch "
                f"{self.trainer.fit_loop.epoch_loop.batch_idx}, after {self.d_steps} D steps "
                f"and {self.g_steps} G steps ({self.images_seen} images seen). Training "
                "stopped before this update; the last good checkpoint is checkpoints/last.ckpt. "
                "Lower the learning rates or try another loss."
            )

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.generator_ema is None:
            return
        decay = self.ema_decay
        if self.ema_warmup:
            steps = self.g_steps
            decay = min(decay, (1 + steps) / (10 + steps))
        ema_params = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.generator.parameters()), 1.0 - decay)
        for ema_buffer, buffer in zip(
            self.generator_ema.buffers(), self.generator.buffers(), strict=True
        ):
            ema_buffer.copy_(buffer)

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()  # None, one scheduler, or a list of them
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def configure_optimizers(self):
        g_opt = self.g_optimizer_factory(self.generator.parameters())
        d_opt = self.d_optimizer_factory(self.discriminator.parameters())
        schedulers = [
            factory(opt)
            for factory, opt in (
                (self.g_scheduler_factory, g_opt),
                (self.d_scheduler_factory, d_opt),
            )
            if factory is not None
        ]
        return [g_opt, d_opt], schedulers

    # ------------------------------------------------------------------ sampling
    def latents(self, count: int, seed: int, start: int = 0) -> torch.Tensor:
        """Latent i depends only on (seed, start + i): the same sample set for any batch size,
        chunking or number of processes."""
        rows = [
            np.random.default_rng([seed, index]).standard_normal(self.latent_dim)
            for index in range(start, start + count)
        ]
        return torch.from_numpy(np.stack(rows).astype(np.float32)).reshape(count, self.latent_dim)

    def sampling_generator(self, use_ema: bool = True) -> nn.Module:
        if use_ema and self.generator_ema is not None:
            return self.generator_ema
        return self.generator

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: Sequence[int] | torch.Tensor | None = None,
        seed: int | None = None,
        use_ema: bool = True,
        batch_size: int = 256,
        start: int = 0,
    ) -> torch.Tensor:
        """`n` samples on the module's device, from the EMA generator when there is one, with
        BatchNorm in eval mode. `seed` fixes the latents (see `latents`); None draws fresh ones."""
        conditions = self.sample_conditions(n, labels, start)
        network = self.sampling_generator(use_ema)
        was_training = network.training
        network.eval()
        try:
            chunks = []
            for lo in range(0, n, batch_size):
                m = min(batch_size, n - lo)
                z = self.latents(m, seed, start + lo) if seed is not None else self.noise(m)
                cond = None if conditions is None else conditions[lo : lo + m].to(self.device)
                chunks.append(self.generate(z.to(self.device), cond, network).float())
            return torch.cat(chunks) if chunks else torch.empty(0)
        finally:
            network.train(was_training)

    def sample_conditions(self, n: int, labels, start: int = 0) -> torch.Tensor | None:
        """What `sample` conditions its `n` samples on; unconditional models take no labels."""
        if labels is not None:
            raise ConfigError(
                f"{len(labels)} labels were given, but {type(self).__name__} is unconditional; "
                "labels need a conditional model (e.g. model=cgan), or leave labels=null"
            )
        return None

    # ------------------------------------------------------------------ shape checks
    def on_fit_start(self) -> None:
        self.check_data_compatibility(self.trainer.datamodule)

    @torch.no_grad()
    def check_data_compatibility(self, datamodule: Any) -> None:
        """Fail before the first step when the networks do not fit the data."""
        if datamodule is None or not hasattr(datamodule, "sample_shape"):
            return  # a user's own datamodule: nothing declared to check against
        data_name = getattr(datamodule, "name", type(datamodule).__name__)
        data_key = getattr(datamodule, "data_key", self.data_key)
        if data_key != self.data_key:
            raise ConfigError(
                f"data '{data_name}' yields batches of '{data_key}', but the model reads "
                f"model.data_key={self.data_key!r}; pick a model made for this data "
                "(image data: gan_mlp, dcgan; 2D points: toy_mlp)"
            )
        expected = tuple(datamodule.sample_shape)
        network = self.generator
        was_training = network.training
        network.eval()  # no BatchNorm statistics change, so resuming stays exact
        try:
            produced = tuple(
                self.generate(self.noise(2), self._dummy_condition(2), network).shape[1:]
            )
        finally:
            network.train(was_training)
        if produced != expected:
            raise ConfigError(
                f"the generator makes samples of shape {produced}, but data '{data_name}' has "
                f"shape {expected}; the model's shape settings must match the data's "
                "(model configs read them from ${data.channels}, ${data.resolution}, ${data.dim})"
            )

    def _dummy_condition(self, batch_size: int) -> Any:
        return None

    # ------------------------------------------------------------------ checkpoint state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganlab"] = {
            "config": self.run_config,
            "rng_states": collect_rng_states(),
            # Lets a resumed run continue the same logger runs (e.g. the same W&B run id).
            "logger_versions": {type(lg).__name__: lg.version for lg in self.loggers},
            "progress": {
                "images_seen": self.images_seen,
                "d_steps": self.d_steps,
                "g_steps": self.g_steps,
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ganlab") or {}
        self.run_config = state.get("config", self.run_config)
        for key, value in state.get("progress", {}).items():
            setattr(self, key, int(value))
        # Applied when training starts: restoring now would be undone by setup code that
        # draws random numbers between loading and the first batch.
        self._pending_rng_states = state.get("rng_states")

    def on_train_start(self) -> None:
        if self._pending_rng_states is not None:
            restore_rng_states(self._pending_rng_states)
            self._pending_rng_states = None

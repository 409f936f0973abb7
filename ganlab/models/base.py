"""GANModule: the two-player training step that every ganlab family builds on."""

from __future__ import annotations

import copy
import functools
import inspect
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from ganlab.errors import ConfigError, NonFiniteLossError
from ganlab.losses import AdversarialLoss
from ganlab.losses.augment import check_augment
from ganlab.losses.regularizers import Regularizer, regularizer_list
from ganlab.models.health import NonFiniteWatch, WeightGrowth, first_non_finite, parameter_norm
from ganlab.monitor.diagnostics import (
    check_grad_clip,
    clip_gradients,
    gradient_norm,
    logit_diagnostics,
    relative_distance,
)
from ganlab.speed import (
    check_switch,
    compile_network,
    deterministic_kernels,
    fast_optimizer,
    to_channels_last,
)
from ganlab.utils.rng import gather_rng_states, restore_process_rng_states, seed_process_streams

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class GANModule(pl.LightningModule):
    """One batch = one discriminator step, and every `n_critic` batches one generator step.

    The player not being updated is frozen (`toggled_optimizer`), so the generator step builds no
    gradients for the discriminator's weights. When a generator step follows, the fakes of the
    discriminator step are generated with a graph and reused, as in the textbook loop, unless
    the variant's `g_step_inputs` gives the G step inputs of its own (BigGAN).

    Regularizers of the discriminator (gradient penalty, R1) and a differentiable augmentation
    of every discriminator input (DiffAugment) are options of any family.

    Variants override `d_loss`/`g_loss` (a different objective), `condition` (what the networks
    are conditioned on), `after_d_step` (e.g. weight clipping), or `training_step` when the
    dynamics differ.

    A player may be a group of networks: `generator` and `discriminator` can be `nn.ModuleDict`s
    (CycleGAN's two generators and two discriminators). Each player group has one optimizer; the
    EMA copy, checkpoints, health checks and sampling work on the whole group.
    """

    conditional = False  # whether `sample` takes labels
    # What sampling starts from: "latent" (`sample(n)`) or "image" (translation models:
    # `translate(inputs)`; ganlab-sample inputs=...).
    input_kind = "latent"

    def __init__(
        self,
        generator: nn.Module,  # maps latents (B, latent_dim) to samples
        discriminator: nn.Module,  # maps samples to logits (B,)
        loss: AdversarialLoss,  # the (d_loss, g_loss) objective pair
        g_optimizer: OptimizerFactory,  # partial optimizer, completed with G's parameters
        d_optimizer: OptimizerFactory,  # partial optimizer, completed with D's parameters
        latent_dim: int | None = None,  # size of z; None for models that take no latents
        n_critic: int = 1,  # discriminator steps per generator step
        ema_decay: float | None = 0.999,  # EMA generator decay; None turns the EMA off
        ema_warmup: bool = True,  # ramp the decay from 0 so early EMA weights are not stale
        data_key: str = "image",  # which batch entry holds the real samples
        g_scheduler: SchedulerFactory | None = None,  # optional, stepped once per epoch
        d_scheduler: SchedulerFactory | None = None,
        d_regularizers: Mapping[str, Regularizer] | Sequence[Regularizer] | None = None,
        augment: nn.Module | None = None,  # applied to every D input, real and fake
        # Warn when a network's weight norm passes this multiple of its initial norm; None: never.
        weight_growth_warning: float | None = 1000.0,
        # Clip each player's gradients to this global norm before its update; None: no clipping.
        g_grad_clip: float | None = None,
        d_grad_clip: float | None = None,
        # GPU speed switches (docs/speed.md): channels_last layout of conv networks and their
        # input batches; torch.compile of every network's forward, falling back to eager.
        channels_last: bool = False,
        compile: bool = False,
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
        # Configs name them ({gp: ..., r1: ...}); an entry left unbuilt is a ConfigError.
        self.d_regularizers = regularizer_list(d_regularizers)
        # Generator regularizers (StyleGAN2's path length), same interface, counted in G steps;
        # a variant fills the list.
        self.g_regularizers: list[Regularizer] = []
        self.augment = check_augment(augment)
        # A frozen copy: saved in checkpoints, moved with the module, never optimized.
        self.generator_ema = self._frozen_copy(generator) if ema_decay is not None else None
        # Progress in plain ints (no device sync to read them), checkpointed by on_save_checkpoint.
        # `global_step` counts both optimizers' steps; these count what each player did.
        self.images_seen = 0
        self.d_steps = 0
        self.g_steps = 0
        # The resolved run config; train.py sets it and checkpoints carry it.
        self.run_config: dict[str, Any] | None = None
        # Read on the host only at the logging interval and before a checkpoint is written.
        self.non_finite = NonFiniteWatch()
        self.weight_growth = WeightGrowth(weight_growth_warning)
        self.g_grad_clip = check_grad_clip("model.g_grad_clip", g_grad_clip)
        self.d_grad_clip = check_grad_clip("model.d_grad_clip", d_grad_clip)
        # Monitor diagnostics of the current logging step (device tensors), the newest logged
        # ones with their D step (read by ganlab.callbacks.TrainingMonitor), G's weights before
        # its update on a logging step, and which player each optimizer updates.
        self._monitor_stats: dict[str, torch.Tensor] = {}
        self.monitor_record: tuple[int, dict[str, torch.Tensor]] | None = None
        self._g_weights_before: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._optimizer_player: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.channels_last = check_switch("model.channels_last", channels_last)
        self.compile_networks = check_switch("model.compile", compile)  # .compile: a method
        self._saved_progress: dict[str, int] | None = None  # what the newest checkpoint holds
        self._epoch_first_step: dict[int, int] = {}  # epoch -> index of its first D step
        # Every process's RNG states from a checkpoint, restored when training starts.
        self._pending_rng_states: list[Any] | dict[str, Any] | None = None

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
        """D's logits for `x`. Every D input goes through here (losses, regularizers), so the
        augmentation reaches all of them."""
        return self.discriminator(self.augment(x) if self.augment is not None else x)

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, cond: Any = None):
        """Discriminator loss and the logged statistics of this step."""
        real_logits = self.discriminate(real, cond).float()
        fake_logits = self.discriminate(fake, cond).float()
        loss = self.loss.d_loss(real_logits, fake_logits)
        stats = {"train/d_real": real_logits.mean(), "train/d_fake": fake_logits.mean()}
        if hasattr(self.augment, "observe_real_logits"):  # ADA tunes p from sign(D(real))
            stats.update(self.augment.observe_real_logits(real_logits))
        if self.logging_step():
            stats.update(logit_diagnostics(self.loss, real_logits, fake_logits))
        return loss, stats

    def g_loss(self, fake: torch.Tensor, cond: Any = None, real: torch.Tensor | None = None):
        """Generator loss and the logged statistics of this step. `real` (the real batch) is
        read only by losses that compare fakes with reals (`loss.needs_real_logits`)."""
        fake_logits = self.discriminate(fake, cond).float()
        if not getattr(self.loss, "needs_real_logits", False):
            return self.loss.g_loss(fake_logits), {}
        real_logits = None if real is None else self.discriminate(real, cond).float()
        return self.loss.g_loss(fake_logits, real_logits), {}

    def g_step_inputs(self, batch_size: int, z: torch.Tensor | None, cond: Any) -> Any:
        """What the G step trains on, asked once per batch on which a G step follows, before
        its D step: None (the default) trains G on this D step's fakes, generated with a graph
        for it; a pair (latents, condition) makes fresh fakes from them for the G step (BigGAN:
        fresh z and random labels). `z` and `cond` are the D step's."""
        return None

    # ------------------------------------------------------------------ training
    def noise(self, batch_size: int) -> torch.Tensor | None:
        if self.latent_dim is None:
            return None  # a translation model: its input image is the only source of variation
        return torch.randn(batch_size, self.latent_dim, device=self.device)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        real = batch[self.data_key]
        cond = self.condition(batch)
        g_step_due = self.d_steps % self.n_critic == self.n_critic - 1

        z = self.noise(real.shape[0])
        g_inputs = self.g_step_inputs(real.shape[0], z, cond) if g_step_due else None
        with torch.set_grad_enabled(g_step_due and g_inputs is None):
            fake = self.generate(z, cond)

        with self.toggled_optimizer(d_opt):
            d_loss, stats = self.d_loss(real, fake.detach(), cond)
            self.watch_finite(d_loss, "train/d_loss")
            penalty = self.d_regularization(real, fake.detach(), cond, stats)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss + penalty)
            d_opt.step()
            self.after_d_step()
        stats["train/d_loss"] = d_loss

        if g_step_due:
            with self.toggled_optimizer(g_opt):
                if g_inputs is not None:  # fresh fakes, from the latents the hook chose
                    z, cond = g_inputs
                    fake = self.generate(z, cond)
                g_loss, g_stats = call_g_loss(self, fake, cond, real)
                self.watch_finite(g_loss, "train/g_loss")
                g_penalty = self.g_regularization(real, fake, cond, g_stats)
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss + g_penalty)
                g_opt.step()
            self.g_steps += 1
            self.update_ema()
            stats.update(g_stats, **{"train/g_loss": g_loss})

        self.d_steps += 1
        self.images_seen += real.shape[0] * self.trainer.world_size
        self.log_step(stats)

    def log_step(self, stats: dict[str, torch.Tensor]) -> None:
        """On logging steps only (`trainer.log_every_n_steps`): log the step's statistics, still
        as device tensors, and check the run's health. Other steps cost no host sync."""
        if not self.trainer._logger_connector.should_update_logs:
            return
        stats = {k: v.detach() for k, v in {**stats, **self.monitor_diagnostics()}.items()}
        self.monitor_record = (self.d_steps, stats)
        self.log_dict(stats, prog_bar=False)
        self.check_health()

    def logging_step(self) -> bool:
        """Whether this step's statistics are logged (`trainer.log_every_n_steps`); False
        outside a fit."""
        trainer = self._trainer
        return trainer is not None and trainer._logger_connector.should_update_logs

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Inside each player's `opt.step()` (manual optimization too): clip its gradients when
        `model.<player>_grad_clip` is set, and on logging steps record their norm before clipping
        and, for G, its weights before the update. Other steps without clipping: no work."""
        player = self.optimizer_player(optimizer)
        limit = self.g_grad_clip if player == "g" else self.d_grad_clip
        logging = self.logging_step()
        if limit is None and not logging:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = gradient_norm(params) if limit is None else clip_gradients(params, limit)
        if logging and norm is not None:
            self._monitor_stats[f"monitor/{player}_grad_norm"] = norm
            if player == "g":
                self._g_weights_before = (params, [p.detach().clone() for p in params])

    def optimizer_player(self, optimizer: torch.optim.Optimizer) -> str:
        """'g' when `optimizer` updates the generator (group), else 'd'."""
        if optimizer not in self._optimizer_player:
            first = optimizer.param_groups[0]["params"][0]
            in_generator = any(p is first for p in self.generator.parameters())
            self._optimizer_player[optimizer] = "g" if in_generator else "d"
        return self._optimizer_player[optimizer]

    @torch.no_grad()
    def monitor_diagnostics(self) -> dict[str, torch.Tensor]:
        """The monitor's values of this logging step, on the device: gradient norms (recorded
        at the optimizer steps), G's update size ||delta theta|| / ||theta||, the EMA
        generator's relative distance from the raw one, and each player's weight norm."""
        stats, self._monitor_stats = self._monitor_stats, {}
        if self._g_weights_before is not None:  # a G step ran on this logging step
            stats["monitor/g_update_size"] = relative_distance(*self._g_weights_before)
            self._g_weights_before = None
        if self.generator_ema is not None:
            stats["monitor/ema_distance"] = relative_distance(
                list(self.generator.parameters()), list(self.generator_ema.parameters())
            )
        stats["monitor/g_weight_norm"] = parameter_norm([self.generator])
        stats["monitor/d_weight_norm"] = parameter_norm([self.discriminator])
        return stats

    def d_regularization(self, real, fake, cond, stats: dict[str, torch.Tensor]):
        """The regularizers due at this D step. Lazy ones (`interval` > 1, as StyleGAN2's R1)
        run every `interval` steps with their weight multiplied by `interval`."""
        total = torch.zeros((), device=real.device)
        for regularizer in self.d_regularizers:
            if self.d_steps % regularizer.interval == 0:
                term = regularizer(self, real, fake, cond)
                self.watch_finite(term, f"train/{regularizer.name}")
                stats[f"train/{regularizer.name}"] = term
                total = total + regularizer.interval * term
        return total

    def g_regularization(self, real, fake, cond, stats: dict[str, torch.Tensor]):
        """The generator regularizers due at this G step, lazy ones as in `d_regularization`
        but every `interval` G steps."""
        total = torch.zeros((), device=real.device)
        for regularizer in self.g_regularizers:
            if self.g_steps % regularizer.interval == 0:
                term = regularizer(self, real, fake, cond)
                self.watch_finite(term, f"train/{regularizer.name}")
                stats[f"train/{regularizer.name}"] = term
                total = total + regularizer.interval * term
        return total

    def after_d_step(self) -> None:
        """Called after each discriminator update, with D still the trainable player."""

    # ------------------------------------------------------------------ health
    def watch_finite(self, value: torch.Tensor, name: str) -> None:
        """Remember (on the device, no host sync) whether `value` became NaN or infinite; the
        run stops at the next health check, naming `name` and the step it happened at."""
        self.non_finite.observe(name, value, self.d_steps)

    def watched_networks(self) -> dict[str, nn.Module]:
        """The trained networks whose weight growth is watched, by name ("generator", or
        "generator.a_to_b" for each network of a player group)."""
        return {
            **network_members("generator", self.generator),
            **network_members("discriminator", self.discriminator),
        }

    def check_health(self) -> None:
        """One host read: raise if a watched value became non-finite since training started,
        and warn when weights explode. Every process of a run stops when one does."""
        failure = self.non_finite.first_failure()
        problem = None
        if failure is not None:
            name, step, value = failure
            problem = f"{name} became {value} at D step {step + 1} ({self._step_place(step)})"
        self._stop_if_any_process(
            problem,
            f"Training stopped at epoch {self.current_epoch}, {self.d_steps} D steps and "
            f"{self.g_steps} G steps. {self.saved_state_note()} Lower the learning rates, check "
            "the learning-rate schedule or try another loss.",
        )
        self.weight_growth.check(
            self.watched_networks(), f"epoch {self.current_epoch}, D step {self.d_steps}"
        )

    def _step_place(self, step: int) -> str:
        """'epoch E, batch B' of the D step with index `step`, from the epochs' first steps."""
        started = [(first, epoch) for epoch, first in self._epoch_first_step.items()]
        first, epoch = max((fe for fe in started if fe[0] <= step), default=(0, 0))
        return f"epoch {epoch}, batch {step - first}"

    def saved_state_note(self) -> str:
        """What the newest checkpoint of this run holds, for error messages."""
        paths = [
            cb.last_model_path or cb.best_model_path
            for cb in (self._trainer.checkpoint_callbacks if self._trainer else [])
        ]
        paths = [p for p in paths if p]
        if self._saved_progress is None or not paths:
            return "No checkpoint was written by this run, so nothing broken was saved."
        return (
            f"Nothing non-finite was saved: {paths[0]} holds the state after epoch "
            f"{self._saved_progress['epoch']} ({self._saved_progress['d_steps']} D steps)."
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_first_step[self.current_epoch] = self.d_steps

    def on_train_end(self) -> None:
        self.check_health()

    def refuse_non_finite_state(self, checkpoint: dict[str, Any]) -> None:
        """Never write a checkpoint one would not resume from: the watched losses, then every
        weight, buffer (BatchNorm statistics, EMA copy) and optimizer moment must be finite."""
        self.check_health()
        parts = {part: checkpoint.get(part, {}) for part in ("state_dict", "optimizer_states")}
        bad = first_non_finite(parts)
        self._stop_if_any_process(
            bad and f"{bad} is not finite at epoch {self.current_epoch} ({self.d_steps} D steps)",
            f"This checkpoint was not written. {self.saved_state_note()} Lower the learning "
            "rates or check the learning-rate schedule.",
        )

    def _stop_if_any_process(self, problem: str | None, advice: str) -> None:
        """Raise on every process when any has a `problem`, so that none is left waiting in a
        collective (checkpoint gathering, DDP's gradient reduction) for the others."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            if not trainer.strategy.reduce_boolean_decision(problem is not None, all=False):
                return
            problem = problem or f"process {trainer.global_rank} stopped because another one did"
        if problem is not None:
            raise NonFiniteLossError(f"{problem}. {advice}")

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
        # Fused Adam kernels when the players are on CUDA (ganlab.speed.fast_optimizer).
        g_opt = fast_optimizer(self.g_optimizer_factory, self.generator.parameters())
        d_opt = fast_optimizer(self.d_optimizer_factory, self.discriminator.parameters())
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

    def require_latent_input(self) -> None:
        """Refuse latent sampling on a model that translates images."""
        if self.input_kind != "latent":
            raise ConfigError(
                f"{type(self).__name__} translates images and draws no samples from latents; "
                "give it images: ganlab-sample ckpt_path=... inputs=FOLDER_OR_NPZ out=OUT.npz "
                "(or model.translate(images) in Python)"
            )

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
        self.require_latent_input()
        conditions = self.sample_conditions(n, labels, start)
        network = self.sampling_generator(use_ema)
        was_training = network.training
        network.eval()
        # With a seed, bit-identical samples on the same device (deterministic cuDNN on CUDA).
        kernels = deterministic_kernels(self.device if seed is not None else None)
        try:
            with kernels:
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
        self.weight_growth.start(self.watched_networks())  # weights as built or as resumed
        if self.compile_networks:  # after the shape check, so it does not compile its shapes
            for name, network in self.watched_networks().items():
                compile_network(network, name)

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
        self.refuse_non_finite_state(checkpoint)
        self._saved_progress = {"epoch": self.current_epoch, "d_steps": self.d_steps}
        checkpoint["ganlab"] = {
            "config": self.run_config,
            "rng_states": gather_rng_states(),  # one entry per process, by global rank
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
        if self.run_config is None:  # a resumed run keeps the config it runs with
            self.run_config = state.get("config")
        for key, value in state.get("progress", {}).items():
            setattr(self, key, int(value))
        # Applied when training starts: restoring now would be undone by setup code that
        # draws random numbers between loading and the first batch.
        self._pending_rng_states = state.get("rng_states")

    def setup(self, stage: str) -> None:
        # After the weights were built alike on every process (same seed), and before anything
        # is drawn for training: each process gets a stream of its own (see ganlab.utils.rng).
        if stage == "fit":
            seed_process_streams(self.global_rank)
            if self.channels_last:  # before the optimizers see the weights
                to_channels_last(self, self.watched_networks())

    def on_train_start(self) -> None:
        if self._pending_rng_states is not None:
            restore_process_rng_states(
                self._pending_rng_states, self.global_rank, self.trainer.world_size, self.d_steps
            )
            self._pending_rng_states = None


def network_members(name: str, player: nn.Module) -> dict[str, nn.Module]:
    """A player's networks by name: {name: player}, or {name.key: network} for a group."""
    if isinstance(player, nn.ModuleDict):
        return {f"{name}.{key}": network for key, network in player.items()}
    return {name: player}


def call_g_loss(module: GANModule, fake: torch.Tensor, cond: Any, real: torch.Tensor):
    """`module.g_loss(fake, cond, real=real)`; a subclass whose override takes no `real` (the
    hook's signature before relativistic losses) is called as `g_loss(fake, cond)`."""
    if _takes_real(type(module).g_loss):
        return module.g_loss(fake, cond, real=real)
    return module.g_loss(fake, cond)


@functools.cache
def _takes_real(hook: Callable[..., Any]) -> bool:
    parameters = inspect.signature(hook).parameters.values()
    return any(p.name == "real" or p.kind is p.VAR_KEYWORD for p in parameters)

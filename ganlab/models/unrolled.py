"""Unrolled GAN (Metz et al., 2017): the generator plays against a discriminator k steps ahead."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from ganlab.errors import ConfigError
from ganlab.models.base import GANModule


class UnrolledGAN(GANModule):
    """The generator's loss is taken against a copy of D advanced by `unrolled_steps` gradient
    steps on the current batch; the copy is thrown away and D itself is updated as usual. With
    `second_order` (the paper's version) the unrolled steps stay in the graph, so the generator
    also sees how D would react to its samples; without it, only D's future weights are used.
    """

    def __init__(
        self,
        *args,
        unrolled_steps: int = 5,  # k; 0 is the plain GAN
        unroll_lr: float | None = None,  # SGD step of the unrolled D; None: D's learning rate
        second_order: bool = True,  # backpropagate through the unrolled steps
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if unrolled_steps < 0:
            raise ConfigError(f"model.unrolled_steps={unrolled_steps} must be >= 0")
        self.unrolled_steps = unrolled_steps
        self.unroll_lr = unroll_lr
        self.second_order = second_order

    def g_loss(self, fake: torch.Tensor, cond: Any = None, real: torch.Tensor | None = None):
        if self.unrolled_steps == 0:
            return super().g_loss(fake, cond, real)
        if real is None:
            raise ConfigError(
                f"model.unrolled_steps={self.unrolled_steps}: the unrolled D steps train on the "
                "real batch, but g_loss was called without `real`"
            )
        lr = self.unroll_lr or self.optimizers()[1].param_groups[0]["lr"]
        params = {
            name: p.detach().requires_grad_(True)
            for name, p in self.discriminator.named_parameters()
        }
        buffers = {name: b.clone() for name, b in self.discriminator.named_buffers()}

        def critic(x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
            x = self.augment(x) if self.augment is not None else x  # as D sees every input
            return functional_call(self.discriminator, (weights, buffers), (x,)).float()

        for _ in range(self.unrolled_steps):
            samples = fake if self.second_order else fake.detach()
            loss = self.loss.d_loss(critic(real, params), critic(samples, params))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=self.second_order)
            params = {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}
            if not self.second_order:
                params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        if getattr(self.loss, "needs_real_logits", False):
            # The unrolled D judges the reals too: with second_order, G reaches them through it.
            return self.loss.g_loss(critic(fake, params), critic(real, params)), {}
        return self.loss.g_loss(critic(fake, params)), {}

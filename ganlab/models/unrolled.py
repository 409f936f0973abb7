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
        self._real: torch.Tensor | None = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._real = batch[self.data_key]  # the unrolled D steps train on this batch
        try:
            super().training_step(batch, batch_idx)
        finally:
            self._real = None

    def g_loss(self, fake: torch.Tensor, cond: Any = None):
        if self.unrolled_steps == 0:
            return super().g_loss(fake, cond)
        lr = self.unroll_lr or self.optimizers()[1].param_groups[0]["lr"]
        params = {
            name: p.detach().requires_grad_(True)
            for name, p in self.discriminator.named_parameters()
        }
        buffers = {name: b.clone() for name, b in self.discriminator.named_buffers()}

        def critic(x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.discriminator, (weights, buffers), (x,)).float()

        for _ in range(self.unrolled_steps):
            samples = fake if self.second_order else fake.detach()
            loss = self.loss.d_loss(critic(self._real, params), critic(samples, params))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=self.second_order)
            params = {name: p - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}
            if not self.second_order:
                params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        return self.loss.g_loss(critic(fake, params)), {}

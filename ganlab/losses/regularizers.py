"""Discriminator regularizers: small functions, and config-friendly objects that apply them.

A regularizer object has a `name` (logged as `train/<name>`), an `interval` (D steps between
applications; >1 is lazy regularization, its weight then multiplied by `interval` by the
module) and `__call__(module, real, fake, cond) -> weighted penalty`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ganlab.errors import ConfigError

Discriminate = Callable[[torch.Tensor, Any], torch.Tensor]


def _input_gradient(discriminate: Discriminate, x: torch.Tensor, cond: Any) -> torch.Tensor:
    """dD(x)/dx, kept in the graph (double backward) so that the penalty trains D."""
    x = x.detach().requires_grad_(True)
    logits = discriminate(x, cond).float()
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.float().flatten(1)


def gradient_penalty(
    discriminate: Discriminate,
    real: torch.Tensor,
    fake: torch.Tensor,
    cond: Any = None,
    target: float = 1.0,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): E[(||grad D(x_hat)|| - 1)^2] at x_hat uniformly on the
    lines between real and fake samples. With a `target` gamma, E[((||grad|| - gamma) / gamma)^2]
    (progressive growing's CIFAR-10 run: gamma 750)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    interpolates = alpha * real.detach() + (1 - alpha) * fake.detach()
    grad = _input_gradient(discriminate, interpolates, cond)
    return ((grad.norm(2, dim=1) - target) / target).pow(2).mean()  # exact for target 1


def r1_penalty(discriminate: Discriminate, real: torch.Tensor, cond: Any = None) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): E[||grad D(x)||^2] on real samples."""
    return _input_gradient(discriminate, real, cond).pow(2).sum(dim=1).mean()


def regularizer_list(regularizers: Mapping[str, Any] | Sequence[Any] | None) -> list[Any]:
    """The regularizers a model was built with, from a config's {name: regularizer} (or a list;
    None: none). An entry left unbuilt (no `_target_`: an experiment's settings for an option
    the command line turned off) is a ConfigError instead of a failure at the first D step."""
    if isinstance(regularizers, Mapping):
        named = list(regularizers.items())
    else:
        named = [(str(index), r) for index, r in enumerate(regularizers or [])]
    for name, regularizer in named:
        if regularizer is not None and not (
            callable(regularizer) and hasattr(regularizer, "interval")
        ):
            raise ConfigError(
                f"regularizers.{name}={regularizer} is not a regularizer (it has no _target_): "
                f"it sets options of {name}, which is not selected; select it "
                f"(regularizers={name}, several as regularizers=[gp,r1]) or drop the setting"
            )
    return [regularizer for _, regularizer in named if regularizer is not None]


class Regularizer:
    name = "regularizer"

    def __init__(self, interval: int = 1):
        if interval < 1:
            raise ValueError(f"{self.name} interval={interval} must be an integer >= 1")
        self.interval = interval

    def __call__(self, module, real, fake, cond) -> torch.Tensor:
        raise NotImplementedError


class GradientPenalty(Regularizer):
    name = "gp"

    def __init__(self, weight: float = 10.0, interval: int = 1, target: float = 1.0):
        super().__init__(interval)
        if not target > 0:
            raise ConfigError(f"regularizers.gp.target={target} must be > 0 (the usual: 1)")
        self.weight, self.target = weight, target

    def __call__(self, module, real, fake, cond):
        penalty = gradient_penalty(module.discriminate, real, fake, cond, self.target)
        return self.weight * penalty


class R1(Regularizer):
    """gamma / 2 * R1; StyleGAN2 applies it lazily, every 16 D steps."""

    name = "r1"

    def __init__(self, gamma: float = 10.0, interval: int = 16):
        super().__init__(interval)
        self.gamma = gamma

    def __call__(self, module, real, fake, cond):
        return 0.5 * self.gamma * r1_penalty(module.discriminate, real, cond)

"""Training health without host syncs: non-finite values remembered on the device, read at the
logging interval and before every checkpoint; the state checked before it is saved; weights that
explode relative to their initial size reported."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger("ganlab")


class NonFiniteWatch:
    """For each watched name, the first step at which its value was NaN or infinite, and that
    value. `observe` only queues device work; `first_failure` reads everything in one host sync."""

    def __init__(self) -> None:
        self._step: dict[str, torch.Tensor] = {}  # int64 scalar, -1 while finite
        self._value: dict[str, torch.Tensor] = {}

    def observe(self, name: str, value: torch.Tensor, step: int) -> None:
        value = value.detach().float()
        if name not in self._step:
            self._step[name] = torch.full((), -1, dtype=torch.long, device=value.device)
            self._value[name] = torch.zeros((), device=value.device)
        first = self._step[name]
        newly_bad = ~torch.isfinite(value) & (first < 0)
        self._step[name] = torch.where(newly_bad, step, first)
        self._value[name] = torch.where(newly_bad, value, self._value[name])

    def first_failure(self) -> tuple[str, int, float] | None:
        """(name, step, value) of the earliest non-finite value seen, or None."""
        if not self._step:
            return None
        names = list(self._step)
        steps = torch.stack([self._step[n] for n in names]).cpu().tolist()
        bad = [(step, i) for i, step in enumerate(steps) if step >= 0]
        if not bad:
            return None
        step, i = min(bad)
        return names[i], step, float(self._value[names[i]].cpu())


def first_non_finite(tensors: Mapping[str, Any], prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in a (nested) state dict that holds a NaN or an
    infinity, or None when all are finite."""
    for key, value in tensors.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return name
        elif isinstance(value, Mapping):
            found = first_non_finite(value, f"{name}.")
            if found:
                return found
        elif isinstance(value, list | tuple):
            found = first_non_finite(dict(enumerate(value)), f"{name}.")
            if found:
                return found
    return None


def parameter_norm(modules: Iterable[nn.Module]) -> torch.Tensor:
    """The global L2 norm of the trainable-or-not parameters of `modules`, on their device."""
    params = [p.detach() for m in modules for p in m.parameters()]
    if not params:
        return torch.zeros(())
    norms = torch._foreach_norm(params)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


class WeightGrowth:
    """Warns once per network when its parameter norm exceeds `bound` times its initial norm:
    the usual sign of a learning rate that diverges before any loss is NaN."""

    def __init__(self, bound: float | None) -> None:
        self.bound = bound
        self.initial: dict[str, float] = {}
        self.warned: set[str] = set()

    def start(self, networks: Mapping[str, nn.Module]) -> None:
        if self.bound is None:
            return
        for name, network in networks.items():
            self.initial.setdefault(name, float(parameter_norm([network]).cpu()))

    def check(self, networks: Mapping[str, nn.Module], where: str) -> None:
        if self.bound is None:
            return
        names = [n for n in networks if n in self.initial and n not in self.warned]
        if not names:
            return
        norms = torch.stack([parameter_norm([networks[n]]) for n in names]).cpu().tolist()
        for name, norm in zip(names, norms, strict=True):
            initial = self.initial[name]
            ratio = norm / initial if initial > 0 else math.inf
            if not ratio <= self.bound:  # also true for NaN and inf
                self.warned.add(name)
                log.warning(
                    "the %s's weights grew to %.3g times their initial norm (%.3g -> %.3g) by %s, "
                    "over model.weight_growth_warning=%g: training is probably diverging; lower "
                    "the learning rates or check the learning-rate schedule",
                    name,
                    ratio,
                    initial,
                    norm,
                    where,
                    self.bound,
                )

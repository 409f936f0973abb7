"""BigGAN's orthogonal regularization (Brock et al., 2019, section 3.1).

With W a weight read as a (out, -1) matrix and M = WW^T with its diagonal zeroed, the penalty
pushes the rows of W towards mutual orthogonality without constraining their norms. The
official code (BigGAN-PyTorch `utils.ortho`) adds the gradient 2*strength*M*W to every weight
of G after backward, skipping 1-D parameters and the shared class embedding; that is the
gradient of (strength / 2) * ||M||_F^2, half the paper's formula, which this module follows.
The paper uses strength 1e-4; the released CIFAR models were trained without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ganlab.errors import ConfigError


def check_strength(strength: float) -> float:
    valid = isinstance(strength, int | float) and not isinstance(strength, bool)
    if not valid or not strength >= 0:
        raise ConfigError(
            f"orthogonal regularization strength={strength!r} must be a number >= 0 "
            "(BigGAN's paper: 1e-4; 0 turns it off)"
        )
    return float(strength)


def _off_diagonal_gram(matrix: torch.Tensor) -> torch.Tensor:
    gram = matrix @ matrix.T
    return gram - torch.diag_embed(torch.diagonal(gram))


def orthogonal_penalty(weight: torch.Tensor, strength: float) -> torch.Tensor:
    """(strength / 2) * ||W W^T (1 - I)||_F^2, W read as (out, -1); differentiable."""
    strength = check_strength(strength)
    return strength / 2 * _off_diagonal_gram(weight.flatten(1)).pow(2).sum()


def orthogonal_gradient(weight: torch.Tensor, strength: float) -> torch.Tensor:
    """The gradient of `orthogonal_penalty` in closed form, 2*strength*M*W, shaped as `weight`:
    zero for any weight whose rows are mutually orthogonal, whatever their norms."""
    strength = check_strength(strength)
    matrix = weight.detach().flatten(1)
    return (2 * strength * _off_diagonal_gram(matrix) @ matrix).view_as(weight)


@torch.no_grad()
def add_orthogonal_gradient_(
    module: nn.Module, strength: float, skip: Iterable[nn.Parameter] = ()
) -> None:
    """Add `orthogonal_gradient` to the .grad of every trainable weight of `module` with 2 or
    more dimensions, except those in `skip` (BigGAN skips G's shared class embedding). Call it
    between backward and the optimizer step, as the official code does."""
    strength = check_strength(strength)
    skipped = {id(p) for p in skip}
    for param in module.parameters():
        if param.ndim < 2 or not param.requires_grad or id(param) in skipped:
            continue
        gradient = orthogonal_gradient(param, strength)
        if param.grad is None:
            param.grad = gradient
        else:
            param.grad += gradient

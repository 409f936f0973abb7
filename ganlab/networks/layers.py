"""Layers shared by several networks: spectral normalization and class-conditional BatchNorm."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm, spectral_norm

# The layers whose `weight` is a linear map: what spectral normalization constrains.
SPECTRAL_NORM_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def _has_spectral_norm(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(isinstance(p, _SpectralNorm) for p in module.parametrizations.weight)


def spectral_norm_(module: nn.Module) -> nn.Module:
    """Spectrally normalize (Miyato et al., 2018) the weight of every Conv2d, ConvTranspose2d,
    Linear and Embedding in `module`, in place, and return `module`.

    Uses `torch.nn.utils.parametrizations.spectral_norm`: the weight is divided by its largest
    singular value, estimated by one power iteration per forward in train mode (none in eval
    mode). Conv weights are read as (out, in*k*k) matrices, transposed convs as (in, out*k*k),
    embeddings as (classes, dim) tables, as in the paper's code (its projection discriminator
    normalizes the class embedding too). SNGAN normalizes D only: on a generator this would also
    normalize `ConditionalBatchNorm2d`'s gain and bias tables. Idempotent: a layer that is
    already normalized is left as is, so calling it twice changes nothing.
    """
    for layer in module.modules():
        if isinstance(layer, SPECTRAL_NORM_LAYERS) and not _has_spectral_norm(layer):
            spectral_norm(layer)
    return module


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d without its own affine, then a per-class gain and bias looked up by label
    (de Vries et al., 2017; Miyato & Koyama, 2018). Starts as plain BatchNorm: gain 1, bias 0."""

    def __init__(
        self,
        num_features: int,  # channels normalized
        num_classes: int,  # rows of the gain and bias tables
    ):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain = self.gain(labels)[:, :, None, None]
        bias = self.bias(labels)[:, :, None, None]
        return self.bn(x) * gain + bias

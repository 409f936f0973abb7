"""Class-conditional generators and discriminators: `G(z, labels) -> x`, `D(x, labels) -> (B,)`.

Generators embed the label and concatenate it to z (Mirza & Osindero, 2014). Discriminators
either project the label onto their features (Miyato & Koyama, 2018) or predict it with an
auxiliary classifier head (AC-GAN, Odena et al., 2017). The DCGAN and MLP bodies are reused by
composition, so the conditional nets stay the same networks as their unconditional families.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ganlab.cli import choice
from ganlab.errors import ConfigError
from ganlab.networks.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from ganlab.networks.layers import spectral_norm_
from ganlab.networks.mlp import MLPDiscriminator, MLPGenerator

# The same scale as DCGAN's weight init: a projection starting near 0 leaves D's first steps to
# the unconditional head, instead of drowning it in a sum of thousands of N(0, 1) products.
PROJECTION_INIT_STD = 0.02


def require_num_classes(num_classes: int | None) -> int:
    """The number of classes of labelled data; a clear error for unlabelled data (null)."""
    if num_classes is None:
        model, data = choice("model"), choice("data")
        model = "a conditional model" if model == "?" else f"model={model}"
        data = "the data" if data == "?" else f"data {data}"
        raise ConfigError(
            f"{model} needs labelled data; {data} has no classes (data.num_classes is null); "
            "pick labelled data such as digits, mnist, fashion_mnist or cifar10"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be an integer >= 1")
    return num_classes


def _split_head(net: nn.Sequential) -> tuple[nn.Sequential, nn.Module]:
    """(feature trunk, final layer) of an unconditional discriminator's `net`."""
    return net[:-1], net[-1]


def _dcgan_trunk(
    channels: int, resolution: int, base_width: int, batch_norm: bool
) -> tuple[nn.Sequential, nn.Conv2d, int]:
    """(trunk, head, feature size) of a DCGAN discriminator. The trunk ends at 4x4; the head (a
    4x4 conv to one channel) is exactly a linear map of the flattened 4x4 features."""
    trunk, head = _split_head(DCGANDiscriminator(channels, resolution, base_width, batch_norm).net)
    return trunk, head, head.in_channels * math.prod(head.kernel_size)


class ConditionalDCGANGenerator(nn.Module):
    """[z, embed(label)] -> the DCGAN generator body -> image.

    The embedding's rows start N(0, 1), the scale of z, so `embed_dim` sets how much of G's
    input is label. Too much lets G ignore z: on the digits after 40 epochs, 50 dims next to a
    100-d z made the samples of a class near copies (0.19 of the real within-class spread, as
    benchmarks/conditional_digits.py measures it), 10 dims kept 0.68 (accuracy 1.000 vs 0.993).
    """

    def __init__(
        self,
        latent_dim: int,  # size of the noise vector z
        channels: int,  # image channels (from the data config)
        resolution: int,  # output side, 32 or 64 (from the data config)
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        base_width: int = 64,  # channels of the last hidden layer, as in DCGANGenerator
        embed_dim: int = 10,  # size of the label embedding; keep it small next to z (docstring)
    ):
        super().__init__()
        self.num_classes = require_num_classes(num_classes)
        self.latent_dim = latent_dim
        # N(0, 1) rows (PyTorch's default): the label enters at the same scale as z.
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.body = DCGANGenerator(latent_dim + embed_dim, channels, resolution, base_width)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z.flatten(1), self.embed(labels)], dim=1))


class ProjectionDCGANDiscriminator(nn.Module):
    """DCGAN trunk -> features h; logit = DCGAN's last layer(h) + <embed(label), h>."""

    def __init__(
        self,
        channels: int,  # image channels (from the data config)
        resolution: int,  # input side, 32 or 64 (from the data config)
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        base_width: int = 64,  # channels of the first layer, as in DCGANDiscriminator
        batch_norm: bool = True,  # the paper's BatchNorm; turn off for gradient penalties
        spectral_norm: bool = False,  # the spectral-norm switch for D (the embedding too)
    ):
        super().__init__()
        self.num_classes = require_num_classes(num_classes)
        # DCGAN's last layer stays the unconditional term
        self.trunk, self.head, features = _dcgan_trunk(channels, resolution, base_width, batch_norm)
        self.embed = nn.Embedding(self.num_classes, features)
        nn.init.normal_(self.embed.weight, 0.0, PROJECTION_INIT_STD)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        projection = (self.embed(labels) * h.flatten(1)).sum(dim=1)
        return self.head(h).flatten() + projection


class ACGANDiscriminator(nn.Module):
    """DCGAN trunk -> features h -> an adversarial logit (B,) and class logits (B, K).

    The adversarial logit ignores the label: AC-GAN conditions D through its auxiliary
    classification loss, which the model computes from `return_class_logits=True`.
    """

    auxiliary_classifier = True  # what ConditionalGAN checks before turning on the AC-GAN loss

    def __init__(
        self,
        channels: int,  # image channels (from the data config)
        resolution: int,  # input side, 32 or 64 (from the data config)
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        base_width: int = 64,  # channels of the first layer, as in DCGANDiscriminator
        batch_norm: bool = True,  # the paper's BatchNorm; turn off for gradient penalties
        spectral_norm: bool = False,  # the spectral-norm switch for D (the class head too)
    ):
        super().__init__()
        self.num_classes = require_num_classes(num_classes)
        self.trunk, self.head, features = _dcgan_trunk(channels, resolution, base_width, batch_norm)
        self.classifier = nn.Linear(features, self.num_classes)
        dcgan_init_(self.classifier)  # N(0, 0.02), as the rest of the DCGAN discriminator
        if spectral_norm:
            spectral_norm_(self)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_class_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        logits = self.head(h).flatten()
        if return_class_logits:
            return logits, self.classifier(h.flatten(1))
        return logits


class ConditionalMLPGenerator(nn.Module):
    """[z, embed(label)] -> the MLP generator body -> data of `out_shape`."""

    def __init__(
        self,
        latent_dim: int,  # size of the noise vector z
        out_shape: Sequence[int],  # shape of one sample, e.g. (1, 28, 28)
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        hidden: Sequence[int] = (256, 512, 1024),  # widths of the hidden layers
        out_activation: str | None = "tanh",  # tanh for data in [-1, 1]
        embed_dim: int = 10,  # label embedding size; small next to z (ConditionalDCGANGenerator)
    ):
        super().__init__()
        self.num_classes = require_num_classes(num_classes)
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.body = MLPGenerator(latent_dim + embed_dim, out_shape, hidden, out_activation)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.embed(labels)], dim=1))


class ProjectionMLPDiscriminator(nn.Module):
    """MLP trunk -> features h; logit = the MLP's last Linear(h) + <embed(label), h>."""

    def __init__(
        self,
        in_shape: Sequence[int],  # shape of one sample
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        hidden: Sequence[int] = (1024, 512, 256),  # widths of the hidden layers
        dropout: float = 0.3,  # dropout after each hidden layer; 0 turns it off
        spectral_norm: bool = False,  # the spectral-norm switch for D (the embedding too)
    ):
        super().__init__()
        self.num_classes = require_num_classes(num_classes)
        unconditional = MLPDiscriminator(in_shape, hidden, dropout)
        self.trunk, self.head = _split_head(unconditional.net)
        self.embed = nn.Embedding(self.num_classes, self.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, PROJECTION_INIT_STD)
        if spectral_norm:
            spectral_norm_(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)

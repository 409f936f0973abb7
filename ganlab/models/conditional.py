"""ConditionalGAN: class-conditional GANs (cGAN with a projection discriminator, or AC-GAN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.models.base import GANModule
from ganlab.monitor.diagnostics import logit_diagnostics
from ganlab.networks.conditional import require_num_classes


class ConditionalGAN(GANModule):
    """Both networks see the label: `G(z, labels)`, `D(x, labels)`.

    Fakes are generated with the labels of the real batch, so D compares real and fake images
    of the same classes. `aux_weight > 0` turns on AC-GAN (Odena et al., 2017): D also
    classifies real and fake images, and G is rewarded when its fakes are classified as their
    conditioning labels; this needs a discriminator with a class head (`ACGANDiscriminator`).
    """

    conditional = True

    def __init__(
        self,
        *args: Any,
        num_classes: int | None,  # number of labels (from the data config); null fails clearly
        aux_weight: float = 0.0,  # weight of the AC-GAN classification loss; 0 turns it off
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.num_classes = require_num_classes(num_classes)
        if aux_weight < 0:
            raise ConfigError(f"model.aux_weight={aux_weight} must be >= 0 (0 turns AC-GAN off)")
        has_class_head = getattr(self.discriminator, "auxiliary_classifier", False)
        d_name = type(self.discriminator).__name__
        if aux_weight > 0 and not has_class_head:
            raise ConfigError(
                f"model.aux_weight={aux_weight} turns on AC-GAN, which needs a discriminator "
                f"with a class head, but model.discriminator is {d_name}; set "
                "model.discriminator._target_=ganlab.networks.ACGANDiscriminator"
            )
        if aux_weight == 0 and has_class_head:
            # Without the auxiliary loss the class head is never trained and D ignores labels.
            raise ConfigError(
                f"model.discriminator is {d_name}, whose class head is trained only by the "
                "AC-GAN loss, but model.aux_weight=0; set model.aux_weight=1 (AC-GAN) or use "
                "ganlab.networks.ProjectionDCGANDiscriminator"
            )
        self.aux_weight = aux_weight

    # ------------------------------------------------------------------ hooks
    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "label" not in batch:
            raise ConfigError(
                f"{type(self).__name__} needs batches with a 'label' entry, got "
                f"{sorted(batch)}; use labelled data (data.num_classes set)"
            )
        return batch["label"]

    def generate(self, z: torch.Tensor, cond: Any = None, network: nn.Module | None = None):
        return (network or self.generator)(z, cond)

    def discriminate(
        self, x: torch.Tensor, cond: Any = None, return_class_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """D's logits for `x` given the labels (and, for AC-GAN, its class logits), with the
        augmentation on every input, as for unconditional models."""
        x = self.augment(x) if self.augment is not None else x
        if return_class_logits:
            return self.discriminator(x, cond, return_class_logits=True)
        return self.discriminator(x, cond)

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, cond: Any = None):
        if not self.aux_weight:
            return super().d_loss(real, fake, cond)
        real_logits, real_classes = self.discriminate(real, cond, return_class_logits=True)
        fake_logits, fake_classes = self.discriminate(fake, cond, return_class_logits=True)
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        # AC-GAN: D learns to classify real images and the fakes as their conditioning labels.
        aux = F.cross_entropy(real_classes.float(), cond) + F.cross_entropy(
            fake_classes.float(), cond
        )
        loss = self.loss.d_loss(real_logits, fake_logits) + self.aux_weight * aux
        stats = {
            "train/d_real": real_logits.mean(),
            "train/d_fake": fake_logits.mean(),
            "train/d_aux": aux,
            "train/d_class_acc": (real_classes.argmax(dim=1) == cond).float().mean(),
        }
        if self.logging_step():  # the monitor's D accuracies, as GANModule.d_loss logs them
            stats.update(logit_diagnostics(self.loss, real_logits, fake_logits))
        return loss, stats

    def g_loss(self, fake: torch.Tensor, cond: Any = None, real: torch.Tensor | None = None):
        if not self.aux_weight:
            return super().g_loss(fake, cond, real)
        logits, classes = self.discriminate(fake, cond, return_class_logits=True)
        aux = F.cross_entropy(classes.float(), cond)
        if getattr(self.loss, "needs_real_logits", False):
            real_logits = None if real is None else self.discriminate(real, cond).float()
            adversarial = self.loss.g_loss(logits.float(), real_logits)
        else:
            adversarial = self.loss.g_loss(logits.float())
        return adversarial + self.aux_weight * aux, {"train/g_aux": aux}

    def _dummy_condition(self, batch_size: int) -> torch.Tensor:
        return self.sample_labels(batch_size).to(self.device)

    # ------------------------------------------------------------------ sampling
    def sample_labels(self, count: int, start: int = 0) -> torch.Tensor:
        """The labels `sample` uses when none are given: sample i gets i % num_classes, so any
        batch size, chunking or number of processes draws the same balanced set."""
        return torch.arange(start, start + count) % self.num_classes

    def check_labels(self, labels: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
        """`labels` as an int64 tensor of length n, or a ConfigError naming the bad value."""
        tensor = torch.as_tensor(labels).cpu()
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise ConfigError(f"labels must be integers, got {tensor.tolist()}")
        tensor = tensor.long().flatten()
        if len(tensor) != n:
            raise ConfigError(f"{len(tensor)} labels were given for {n} samples; give one each")
        bad = tensor[(tensor < 0) | (tensor >= self.num_classes)]
        if len(bad):
            raise ConfigError(
                f"label {int(bad[0])} is out of range: labels must be in [0, {self.num_classes}) "
                f"(0..{self.num_classes - 1}), the classes of this model"
            )
        return tensor

    def sample_conditions(self, n: int, labels, start: int = 0) -> torch.Tensor:
        """The given labels (one per sample), or labels `sample_labels(n, start)`."""
        return self.sample_labels(n, start) if labels is None else self.check_labels(labels, n)

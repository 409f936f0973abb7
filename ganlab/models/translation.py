"""PairedTranslationGAN: image-to-image GANs trained on (source, target) pairs (pix2pix, and
the restoration tasks built like it: watermark removal, denoising, super-resolution)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.models.base import GANModule

TEST_MODES = ("eval", "train")


class TranslationMixin:
    """What every image-to-image model shares, paired or not: `translate`, the input-size check
    and the test-time mode of the generator. Models define `translation_network(use_ema)` and
    `make_condition(source, mask)`; `generate(None, cond, network)` runs the network."""

    input_kind = "image"
    test_mode: str

    def translation_network(self, use_ema: bool = True) -> nn.Module:
        return self.sampling_generator(use_ema)

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor | None) -> Any:
        """What the generator is given for `source` (and, for inpainting, its hole mask)."""
        return source

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse an input size the generator's strides cannot take, naming sizes that work."""
        network = self.translation_network(use_ema=False)
        multiple = int(getattr(network, "size_multiple", 1))
        if height % multiple or width % multiple:
            raise ConfigError(
                f"inputs of size {height}x{width} do not fit {type(network).__name__}: height "
                f"and width must be multiples of {multiple} (e.g. {multiple * 4}x{multiple * 4} "
                f"or {multiple * 8}x{multiple * 6}); crop or pad the images"
            )

    @contextmanager
    def test_time(self, network: nn.Module) -> Iterator[None]:
        """The generator as scores are computed: `test_mode` "eval" (BatchNorm running statistics,
        no dropout) or "train" (the pix2pix paper: test-batch statistics and dropout on, as in
        training). Running statistics are restored afterwards, so translating changes nothing."""
        was_training = network.training
        # only train mode changes BatchNorm statistics: nothing to save in eval mode
        statistics = network.state_dict().items() if self.test_mode == "train" else ()
        saved = {k: v.clone() for k, v in statistics if _is_statistic(k)}
        network.train(self.test_mode == "train")
        try:
            yield
        finally:
            network.train(was_training)
            if saved:
                network.load_state_dict(saved, strict=False)

    @torch.no_grad()
    def translate(
        self,
        inputs: torch.Tensor,  # (N, C, h, w) in [-1, 1]
        masks: torch.Tensor | None = None,  # (N, 1, h, w), 1 = missing (inpainting)
        use_ema: bool = True,
        batch_size: int = 16,
    ) -> torch.Tensor:
        """The generator's outputs for `inputs`, in input order, float32 in [-1, 1] on the model's
        device. In test mode "train" each image goes alone (its BatchNorm statistics are its own,
        whatever else is translated with it)."""
        if inputs.dim() != 4:
            shape = tuple(inputs.shape)
            raise ConfigError(f"inputs must be images (N, C, H, W), got shape {shape}")
        self.check_input_size(*inputs.shape[-2:])
        network = self.translation_network(use_ema)
        step = 1 if self.test_mode == "train" else batch_size
        outputs = []
        with self.test_time(network):
            for lo in range(0, len(inputs), step):
                source = inputs[lo : lo + step].to(self.device, torch.float32)
                mask = None if masks is None else masks[lo : lo + step].to(self.device)
                cond = self.make_condition(source, mask)
                outputs.append(self.generate(None, cond, network).float())
        return torch.cat(outputs) if outputs else torch.empty(0, device=self.device)


def _is_statistic(key: str) -> bool:
    """BatchNorm's running mean/var and its batch counter: what a forward in train mode changes."""
    return "running" in key or key.endswith("num_batches_tracked")


def check_test_mode(test_mode: str) -> str:
    if test_mode not in TEST_MODES:
        raise ConfigError(f"model.test_mode={test_mode!r} is not supported; accepted: {TEST_MODES}")
    return test_mode


class PairedTranslationGAN(TranslationMixin, GANModule):
    """pix2pix (Isola et al., 2017): G maps a source image to the target; D judges
    `cat(source, image)` (a conditional, usually PatchGAN, discriminator) or the image alone
    (`conditional_d: false`, as SRGAN's D). G's loss is `gan_weight` * GAN + `l1_weight` * L1 +
    `l2_weight` * MSE to the target (MSE: the loss PSNR measures, DnCNN's; off by default).
    `gan_weight: 0` trains by the pixel losses alone (the regression baseline; no D step is run).

    The official pix2pix halves D's loss (0.5 * (real + fake)); with Adam a constant factor on a
    loss does not change the updates (up to eps), so the shared losses are used unscaled.
    """

    def __init__(
        self,
        *args: Any,
        l1_weight: float = 100.0,  # pix2pix's lambda_L1
        gan_weight: float = 1.0,  # 0: the pixel losses alone, D never trained
        l2_weight: float = 0.0,  # mean squared error to the target (denoising)
        conditional_d: bool = True,  # D sees cat(source, image); SR sets false (sizes differ)
        test_mode: str = "eval",  # "train": the pix2pix paper's test-time BN/dropout
        **kwargs: Any,
    ):
        kwargs.setdefault("data_key", "target")
        kwargs.setdefault("ema_decay", None)
        super().__init__(*args, **kwargs)
        weights = {"l1_weight": l1_weight, "gan_weight": gan_weight, "l2_weight": l2_weight}
        for name, value in weights.items():
            if value < 0:
                raise ConfigError(f"model.{name}={value} must be >= 0")
        if not any(weights.values()):
            raise ConfigError(
                "model.l1_weight, model.l2_weight and model.gan_weight are all 0: nothing to train"
            )
        self.l1_weight = l1_weight
        self.l2_weight = l2_weight
        self.gan_weight = gan_weight
        self.conditional_d = conditional_d
        self.test_mode = check_test_mode(test_mode)

    # ------------------------------------------------------------------ hooks
    def condition(self, batch: dict[str, torch.Tensor]) -> Any:
        if "source" not in batch:
            raise ConfigError(
                f"{type(self).__name__} needs paired batches with 'source' and 'target', got "
                f"{sorted(batch)}; use paired data (e.g. data=aligned or data=watermark_photos)"
            )
        return self.make_condition(batch["source"], batch.get("mask"))

    @staticmethod
    def source_of(cond: Any) -> torch.Tensor:
        return cond[0] if isinstance(cond, tuple) else cond

    def generate(self, z: Any, cond: Any = None, network: nn.Module | None = None):
        network = network or self.generator
        return network(*cond) if isinstance(cond, tuple) else network(cond)

    def discriminate(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if self.conditional_d:
            x = torch.cat([self.source_of(cond), x], dim=1)
        return self.discriminator(self.augment(x) if self.augment is not None else x)

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor, cond: Any):
        """The paired terms G minimises besides the GAN term, and their logged parts."""
        l1 = F.l1_loss(fake.float(), real.float())
        if not self.l2_weight:
            return self.l1_weight * l1, {"train/g_l1": l1}
        l2 = F.mse_loss(fake.float(), real.float())
        return self.l1_weight * l1 + self.l2_weight * l2, {"train/g_l1": l1, "train/g_l2": l2}

    def g_loss(self, fake: torch.Tensor, cond: Any = None, real: torch.Tensor | None = None):
        reconstruction, stats = self.reconstruction_loss(fake, real, cond)
        if self.gan_weight == 0:
            return reconstruction, stats
        adversarial, _ = super().g_loss(fake, cond, real)
        stats["train/g_gan"] = adversarial
        return self.gan_weight * adversarial + reconstruction, stats

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self.gan_weight > 0:
            return super().training_step(batch, batch_idx)
        # Regression alone: G's steps only, D stays as initialised.
        g_opt, d_opt = self.optimizers()
        real = batch[self.data_key]
        cond = self.condition(batch)
        with self.toggled_optimizer(g_opt):
            fake = self.generate(None, cond)
            g_loss, stats = self.g_loss(fake, cond, real)
            self.watch_finite(g_loss, "train/g_loss")
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            g_opt.step()
        # D's step with no gradients changes nothing, but keeps Lightning's step count at two per
        # batch, so a `trainer.max_steps` budget means as many batches as in the GAN runs.
        d_opt.zero_grad(set_to_none=True)
        d_opt.step()
        self.g_steps += 1
        self.d_steps += 1  # one batch, as in adversarial training: step counts stay comparable
        self.update_ema()
        self.images_seen += real.shape[0] * self.trainer.world_size
        self.log_step({**stats, "train/g_loss": g_loss})

    # ------------------------------------------------------------------ shape checks
    @torch.no_grad()
    def check_data_compatibility(self, datamodule: Any) -> None:
        """Fail before the first step when the generator's output does not fit the targets."""
        if datamodule is None or not hasattr(datamodule, "source_shape"):
            return
        data_name = getattr(datamodule, "name", type(datamodule).__name__)
        source_shape = tuple(datamodule.source_shape)
        self.check_input_size(*source_shape[-2:])
        source = torch.zeros(2, *source_shape, device=self.device)
        mask = torch.zeros(2, 1, *source_shape[-2:], device=self.device)
        network = self.translation_network(use_ema=False)
        with self.test_time(network):
            produced = tuple(self.generate(None, self.make_condition(source, mask), network).shape)
        expected = tuple(datamodule.sample_shape)
        if produced[1:] != expected:
            raise ConfigError(
                f"the generator maps data '{data_name}' sources of shape {source_shape} to "
                f"{produced[1:]}, but its targets have shape {expected}; the model's channels "
                "and scale must match the data's (model configs read ${data.channels})"
            )
        if self.gan_weight > 0:
            self.check_discriminator_input(source, torch.zeros(produced, device=self.device))

    @torch.no_grad()
    def check_discriminator_input(self, source: torch.Tensor, image: torch.Tensor) -> None:
        inputs = torch.cat([source, image], 1) if self.conditional_d else image
        expected = getattr(self.discriminator, "in_channels", inputs.shape[1])
        if inputs.shape[1] != expected:
            what = "source + image" if self.conditional_d else "image"
            raise ConfigError(
                f"model.discriminator takes {expected} input channels, but it is given the "
                f"{what}: {inputs.shape[1]} channels; set model.discriminator.channels="
                f"{inputs.shape[1]}"
            )

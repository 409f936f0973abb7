"""Restoration GANs trained on (degraded, clean) pairs like pix2pix: inpainting (DeepFillv2's
losses on a gated-conv generator) and watermark removal (pix2pix with an optional mask head).
Denoising needs no module of its own: conf/model/denoise.yaml is a `PairedTranslationGAN`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.models.translation import PairedTranslationGAN
from ganlab.networks import PatchGANDiscriminator, spectral_norm_

# A probability of exactly 0 or 1 has an infinite logit: the mask head's are clamped this far in.
MASK_EPS = 1e-6
# The mask head's loss: BCE alone, or BCE + soft Dice (1 - Dice per image, batch mean), which
# does not shrink with the share of watermarked pixels (often < 10 %: BCE alone learns "clean").
MASK_LOSSES = ("bce", "bce_dice")
# What the image channels are: "clean", the clean image (pix2pix); "residual", a correction
# added to the source (clean = source + 2 t, clamped to [-1, 1]), which starts at the identity
# and need not carry the whole image through the U-Net's bottleneck; "unblend", the watermark's
# colour c and, in one more channel, its opacity a, inverted as the blend was made:
# clean = (source - a c) / (1 - a), a in [0, MAX_OPACITY]; "global_unblend", the same inversion
# with one colour and one opacity per image (their means over the pixels, weighted by the mask
# head's probability m, which is read as the watermark's coverage): a = opacity * m. One
# watermark has one colour and one opacity, and a per-image estimate pools the evidence of every
# marked pixel; pixels with m = 0 pass through unchanged, so no composite follows.
IMAGE_BRANCHES = ("clean", "residual", "unblend", "global_unblend")
UNBLEND_BRANCHES = ("unblend", "global_unblend")
MAX_OPACITY = 0.9


def sn_patchgan_discriminator(
    channels: int = 4,  # input channels: image + mask (DeepFillv2's D sees both)
    base_width: int = 64,  # channels of the first conv; doubles, capped at 8x
    n_layers: int = 3,  # stride-2 convs (3: 70x70 patches)
) -> PatchGANDiscriminator:
    """SN-PatchGAN (Yu et al., 2019): a PatchGAN without norm layers, every conv spectrally
    normalized, trained with the hinge loss."""
    return spectral_norm_(PatchGANDiscriminator(channels, base_width, n_layers, norm="none"))


def masked_l1(
    prediction: torch.Tensor,  # (B, C, H, W)
    target: torch.Tensor,  # (B, C, H, W)
    mask: torch.Tensor,  # (B, 1, H, W), 1 = missing
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 on the hole, L1 on the valid region), each the mean over the elements (pixels x
    channels) of its own region in the whole batch, as MMagic's masked L1 (`sample_wise=False`):
    the hole term does not shrink with the hole's size. An empty region gives 0."""
    error = (prediction.float() - target.float()).abs()
    mask = mask.float()
    per_pixel = error.shape[1]  # the (B, 1, H, W) mask covers every channel
    hole = (error * mask).sum() / (mask.sum() * per_pixel).clamp_min(1)
    valid = (error * (1 - mask)).sum() / ((1 - mask).sum() * per_pixel).clamp_min(1)
    return hole, valid


def check_weight(name: str, value: float) -> float:
    if value < 0:
        raise ConfigError(f"model.{name}={value} must be >= 0")
    return value


def soft_dice_loss(probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per image of (B, 1, H, W) probabilities against a 0/1 mask, batch mean; +1
    in numerator and denominator, so an image without watermark asks for an empty mask."""
    probability, target = probability.float().flatten(1), target.float().flatten(1)
    overlap = (probability * target).sum(1)
    dice = (2 * overlap + 1) / (probability.sum(1) + target.sum(1) + 1)
    return (1 - dice).mean()


def takes_two_inputs(network: nn.Module) -> bool:
    parameters = inspect.signature(network.forward).parameters.values()
    return len(parameters) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def global_unblend(
    source: torch.Tensor,  # (B, C, H, W) watermarked, in [-1, 1]
    colour: torch.Tensor,  # (B, C, H, W) per-pixel estimates of the watermark's colour
    opacity: torch.Tensor,  # (B, 1, H, W) per-pixel estimates of its opacity
    coverage: torch.Tensor,  # (B, 1, H, W) in [0, 1]: how much of each pixel it covers
) -> torch.Tensor:
    """The blend source = (1 - a) clean + a colour inverted with one colour and one opacity per
    image (their means weighted by `coverage`) and a = opacity * coverage."""
    weight = coverage / coverage.sum((2, 3), keepdim=True).clamp_min(MASK_EPS)
    colour = (colour * weight).sum((2, 3), keepdim=True)
    alpha = (opacity * weight).sum((2, 3), keepdim=True) * coverage
    return clamp_passing_gradients((source - alpha * colour) / (1 - alpha))


def clamp_passing_gradients(image: torch.Tensor) -> torch.Tensor:
    """`image` clamped to [-1, 1], with the gradient of the unclamped image: an unblend whose
    colour estimate is far off overshoots the range, and a plain clamp would pass no gradient
    to correct it (the colour and opacity would stay where they started)."""
    return image + (image.clamp(-1, 1) - image).detach()


class InpaintingGAN(PairedTranslationGAN):
    """GAN inpainting after DeepFillv2: G fills the hole of `source` given its mask, D judges the
    composited image with the mask beside it (4 channels; `conditional_d: false`: image alone).

    G's loss: `hole_weight` * L1(hole) + `valid_weight` * L1(valid region) (see `masked_l1`) on
    G's raw prediction, + `gan_weight` * GAN on the composite. The defaults are DeepFillv2's
    (1, 1, 0.1 with hinge); PConv uses 6 / 1 without a GAN. The valid-region term needs the
    prediction before compositing, so the generator must not composite itself
    (`GatedInpaintingGenerator(composite=False)`); this module composites (known pixels from the
    input, the hole from G) for D, `translate` and the scores.
    """

    def __init__(
        self,
        generator: nn.Module,  # (image, mask) -> raw prediction of the whole image
        discriminator: nn.Module,  # (image + mask channels) -> patch logits
        *args: Any,
        hole_weight: float = 1.0,  # DeepFillv2: 1; PConv: 6
        valid_weight: float = 1.0,  # DeepFillv2 and PConv: 1
        gan_weight: float = 0.1,  # DeepFillv2: 0.1 (hinge); 0 trains by the L1 terms alone
        **kwargs: Any,
    ):
        if "l1_weight" in kwargs:
            raise ConfigError(
                "model.l1_weight does not apply to InpaintingGAN; its L1 terms are "
                "model.hole_weight and model.valid_weight"
            )
        check_weight("hole_weight", hole_weight)
        check_weight("valid_weight", valid_weight)
        if hole_weight == 0 and valid_weight == 0 and gan_weight == 0:
            raise ConfigError(
                "model.hole_weight, model.valid_weight and model.gan_weight are all 0: nothing "
                "to train"
            )
        if not takes_two_inputs(generator):
            raise ConfigError(
                f"model.generator ({type(generator).__name__}) takes the image alone, but "
                "InpaintingGAN's generator takes (image, mask), e.g. "
                "ganlab.networks.GatedInpaintingGenerator"
            )
        if getattr(generator, "composite", False):
            raise ConfigError(
                "model.generator.composite=true: InpaintingGAN composites the output itself and "
                "needs the raw prediction for its valid-region loss; set "
                "model.generator.composite=false"
            )
        # The base's L1 weight: the two masked terms' total (its nothing-to-train check reads it).
        l1_weight = hole_weight + valid_weight
        super().__init__(
            generator, discriminator, *args, l1_weight=l1_weight, gan_weight=gan_weight, **kwargs
        )
        self.hole_weight = hole_weight
        self.valid_weight = valid_weight

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor | None) -> Any:
        if mask is None:
            raise ConfigError(
                f"{type(self).__name__} needs the hole mask of every image, (N, 1, H, W) with "
                "1 = missing: batches with 'mask' (data=inpaint_photos, inpainting_folder), "
                "translate(images, masks), or ganlab-sample inputs=FILE.npz holding 'masks'"
            )
        return source, mask

    def generate(self, z: Any, cond: Any = None, network: nn.Module | None = None):
        """The composite: the known pixels of the source exactly, G's prediction in the hole.
        The raw prediction rides along as `.prediction` for the valid-region loss."""
        source, mask = cond
        prediction = (network or self.generator)(source, mask)
        image = source * (1 - mask) + prediction * mask
        image.prediction = prediction
        return image

    def discriminate(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if self.conditional_d:
            # Augmented together: a shift or cutout moves the mask with its image.
            x = torch.cat([x, cond[1].to(x.dtype)], dim=1)
        return self.discriminator(self.augment(x) if self.augment is not None else x)

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor, cond: Any):
        prediction = getattr(fake, "prediction", fake)
        hole, valid = masked_l1(prediction, real, cond[1])
        loss = self.hole_weight * hole + self.valid_weight * valid
        return loss, {"train/g_l1_hole": hole, "train/g_l1_valid": valid}

    @torch.no_grad()
    def check_discriminator_input(self, source: torch.Tensor, image: torch.Tensor) -> None:
        given = image.shape[1] + (1 if self.conditional_d else 0)
        expected = getattr(self.discriminator, "in_channels", given)
        if given != expected:
            what = "image + mask" if self.conditional_d else "image"
            raise ConfigError(
                f"model.discriminator takes {expected} input channels, but it is given the "
                f"{what}: {given} channels; set model.discriminator.channels={given}"
            )

    @torch.no_grad()
    def translate(
        self,
        inputs: torch.Tensor,  # (N, C, H, W) in [-1, 1]; the hole's values are ignored
        masks: torch.Tensor | None = None,  # (N, 1, H, W), 1 = missing; required
        use_ema: bool = True,
        batch_size: int = 16,
    ) -> torch.Tensor:
        """The inpainted images: the known pixels of `inputs` unchanged, the holes filled."""
        if masks is None:
            self.make_condition(inputs, None)  # raises, saying what to give
        expected = (len(inputs), 1, *inputs.shape[-2:])
        if inputs.dim() == 4 and tuple(masks.shape) != expected:
            raise ConfigError(
                f"masks of shape {tuple(masks.shape)} do not fit inputs of shape "
                f"{tuple(inputs.shape)}; expected {expected}: one (1, H, W) mask per image"
            )
        if not torch.all((masks == 0) | (masks == 1)):
            raise ConfigError("masks must hold only 0 (known pixel) and 1 (missing pixel)")
        return super().translate(inputs, masks.float(), use_ema, batch_size)


class WatermarkRemovalGAN(PairedTranslationGAN):
    """Watermark removal as pix2pix on (watermarked, clean) pairs, with an optional mask head.

    `mask_weight` > 0: the generator gets one more output channel, read as the probability that
    a pixel is watermarked and trained with `mask_weight` * `mask_loss` (BCE with positive
    weight `mask_pos_weight`, + soft Dice for "bce_dice") against batch "mask"; with
    `composite_with_mask` the image is `source * (1 - m) + prediction * m`, so pixels the head
    calls clean pass through unchanged (the default with a head). `inside_l1_weight` adds the L1
    of the image channels' raw prediction on the true mask's pixels, so that they learn to
    restore watermarked pixels while the head is still unsure where those are. `image_branch`
    "residual" reads the image channels t as a correction: prediction = source + 2 t;
    "unblend" as the watermark's colour, with an opacity channel; "global_unblend" pools that
    colour and opacity over the image and needs the mask head (see IMAGE_BRANCHES).
    `mask_weight: 0` with `image_branch: clean` is plain pix2pix.

    The U-Net ends in Tanh on every channel: its mask channel t is read as m = (t + 1) / 2, which
    is sigmoid(2a) of the pre-Tanh activation a, i.e. a sigmoid mask head with logit 2a.
    """

    def __init__(
        self,
        generator: nn.Module | Callable[..., nn.Module],  # source -> image (+ mask channel)
        discriminator: nn.Module,
        *args: Any,
        channels: int = 3,  # image channels of source and target
        mask_weight: float = 1.0,  # weight of the mask head's BCE; 0: no mask head
        # Keep the pixels the head calls clean; None: whenever there is a mask head.
        composite_with_mask: bool | None = None,
        mask_loss: str = "bce",  # "bce" or "bce_dice"
        mask_pos_weight: float = 1.0,  # BCE weight of watermarked pixels (> 0)
        inside_l1_weight: float = 0.0,  # L1 of the raw prediction on the true mask's pixels
        image_branch: str = "clean",  # "clean", "residual", "unblend", "global_unblend"
        **kwargs: Any,
    ):
        if image_branch not in IMAGE_BRANCHES:
            accepted = ", ".join(repr(name) for name in IMAGE_BRANCHES)
            raise ConfigError(
                f"model.image_branch={image_branch!r} is not supported; accepted: {accepted}"
            )
        check_weight("mask_weight", mask_weight)
        check_weight("inside_l1_weight", inside_l1_weight)
        if mask_loss not in MASK_LOSSES:
            accepted = ", ".join(repr(name) for name in MASK_LOSSES)
            raise ConfigError(
                f"model.mask_loss={mask_loss!r} is not supported; accepted: {accepted}"
            )
        if not mask_pos_weight > 0:
            raise ConfigError(f"model.mask_pos_weight={mask_pos_weight} must be > 0")
        if inside_l1_weight > 0 and mask_weight == 0:
            raise ConfigError(
                f"model.inside_l1_weight={inside_l1_weight} needs the mask head (model.mask_weight "
                "> 0), whose batches carry the true masks; set model.inside_l1_weight=0"
            )
        if image_branch == "global_unblend":
            if mask_weight == 0:
                raise ConfigError(
                    "model.image_branch='global_unblend' reads the mask head as the watermark's "
                    "coverage; set model.mask_weight > 0"
                )
            if inside_l1_weight == 0:
                raise ConfigError(
                    "model.image_branch='global_unblend' learns the watermark's colour and "
                    "opacity from model.inside_l1_weight's term alone; set it > 0"
                )
            if composite_with_mask:
                raise ConfigError(
                    "model.composite_with_mask=true does not apply to model.image_branch="
                    "'global_unblend', which leaves the pixels the head calls clean unchanged "
                    "itself; leave model.composite_with_mask null"
                )
            composite_with_mask = False
        if composite_with_mask is None:
            composite_with_mask = mask_weight > 0
        if composite_with_mask and mask_weight == 0:
            raise ConfigError(
                "model.composite_with_mask=true needs the mask head (model.mask_weight > 0); "
                "leave model.composite_with_mask null for plain pix2pix"
            )
        mask_channels = 1 if mask_weight > 0 else 0
        if not isinstance(generator, nn.Module):
            # A partial network config: this module decides its channels.
            for key in ("channels", "out_channels"):
                if key in getattr(generator, "keywords", {}):
                    raise ConfigError(
                        f"model.generator.{key} is set by WatermarkRemovalGAN from "
                        "model.channels (and the mask head); remove it"
                    )
            out_channels = channels + (image_branch in UNBLEND_BRANCHES) + mask_channels
            try:
                generator = generator(channels=channels, out_channels=out_channels)
            except TypeError as error:
                raise ConfigError(
                    f"model.generator cannot be built with channels={channels}, out_channels="
                    f"{out_channels} ({error}); WatermarkRemovalGAN's generator takes both, e.g. "
                    "ganlab.networks.UnetGenerator"
                ) from error
        super().__init__(generator, discriminator, *args, **kwargs)
        self.channels = channels
        self.mask_weight = mask_weight
        self.mask_channels = mask_channels
        self.composite_with_mask = composite_with_mask
        self.mask_loss = mask_loss
        self.mask_pos_weight = mask_pos_weight
        self.inside_l1_weight = inside_l1_weight
        self.image_branch = image_branch

    def condition(self, batch: dict[str, torch.Tensor]) -> Any:
        if self.mask_weight > 0 and "mask" not in batch:
            raise ConfigError(
                f"model.mask_weight={self.mask_weight} trains a mask head against batch 'mask', "
                f"but the batches hold {sorted(batch)}; use data with watermark masks "
                "(data=watermark_photos, clwd) or set model.mask_weight=0"
            )
        return super().condition(batch)

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor | None) -> Any:
        return (source, mask) if self.mask_channels else source

    def generate(self, z: Any, cond: Any = None, network: nn.Module | None = None):
        """The clean image; with the mask head, its mask probability rides along as
        `.mask_probability`."""
        source = self.source_of(cond)
        output = (network or self.generator)(source)
        opacity_channels = 1 if self.image_branch in UNBLEND_BRANCHES else 0
        expected = self.channels + opacity_channels + self.mask_channels
        if output.shape[1] != expected:
            head = " + 1 opacity channel" if opacity_channels else ""
            head += " + 1 mask channel" if self.mask_channels else ""
            raise ConfigError(
                f"the generator returns {output.shape[1]} channels, but model.channels="
                f"{self.channels}{head} needs {expected}; build it with out_channels={expected}"
            )
        prediction = output[:, : self.channels]
        if opacity_channels:
            opacity = MAX_OPACITY * (output[:, self.channels : self.channels + 1] + 1) / 2
        if self.image_branch == "residual":
            prediction = (source + 2 * prediction).clamp(-1, 1)
        elif self.image_branch == "unblend":
            prediction = clamp_passing_gradients((source - opacity * prediction) / (1 - opacity))
        if not self.mask_channels:
            return prediction
        mask = (output[:, -1:] + 1) / 2
        unblend_maps = None
        if self.image_branch == "global_unblend":
            unblend_maps = (prediction, opacity)
            # The colour and opacity learn from the true mask alone (`reconstruction_loss`):
            # through the head's early, spread-out mask every pixel would ask for opacity 0,
            # and the saturated Tanh would keep it there. Here they train the mask only.
            prediction = global_unblend(source, prediction.detach(), opacity.detach(), mask)
        image = source * (1 - mask) + prediction * mask if self.composite_with_mask else prediction
        image.mask_probability = mask
        image.prediction = prediction  # the image channels before compositing
        if unblend_maps is not None:
            image.unblend_maps = unblend_maps  # per-pixel colour and opacity, before pooling
        return image

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor, cond: Any):
        loss, stats = super().reconstruction_loss(fake, real, cond)
        if self.mask_channels:
            truth = cond[1].float()
            logit = torch.logit(fake.mask_probability.float(), eps=MASK_EPS)
            pos_weight = torch.tensor(self.mask_pos_weight, device=logit.device)
            bce = F.binary_cross_entropy_with_logits(logit, truth, pos_weight=pos_weight)
            stats["train/g_mask_bce"] = bce
            mask_loss = bce
            if self.mask_loss == "bce_dice":
                dice = soft_dice_loss(fake.mask_probability, truth)
                stats["train/g_mask_dice"] = dice
                mask_loss = bce + dice
            loss = loss + self.mask_weight * mask_loss
            if self.inside_l1_weight > 0:
                restored = fake.prediction
                if self.image_branch == "global_unblend":
                    # pooled over the true mask: what trains the colour and opacity (generate)
                    restored = global_unblend(self.source_of(cond), *fake.unblend_maps, truth)
                inside, _ = masked_l1(restored, real, truth)
                stats["train/g_l1_inside"] = inside
                loss = loss + self.inside_l1_weight * inside
        return loss, stats

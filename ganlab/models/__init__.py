"""LightningModules, one per training dynamic. `GANModule` is the plain two-player GAN."""

from ganlab.models.base import GANModule
from ganlab.models.biggan import BigGAN
from ganlab.models.conditional import ConditionalGAN
from ganlab.models.cyclegan import CycleGAN, ImagePool
from ganlab.models.progan import ProGAN
from ganlab.models.restoration import InpaintingGAN, WatermarkRemovalGAN
from ganlab.models.schedules import LinearDecay
from ganlab.models.stylegan2 import StyleGAN2
from ganlab.models.superres import SRGAN
from ganlab.models.translation import PairedTranslationGAN, TranslationMixin
from ganlab.models.unrolled import UnrolledGAN
from ganlab.models.wgan import WGAN

__all__ = [
    "BigGAN",
    "ConditionalGAN",
    "CycleGAN",
    "GANModule",
    "ImagePool",
    "InpaintingGAN",
    "LinearDecay",
    "PairedTranslationGAN",
    "ProGAN",
    "SRGAN",
    "StyleGAN2",
    "TranslationMixin",
    "UnrolledGAN",
    "WatermarkRemovalGAN",
    "WGAN",
]

"""LightningModules, one per training dynamic. `GANModule` is the plain two-player GAN."""

from ganlab.models.base import GANModule
from ganlab.models.conditional import ConditionalGAN
from ganlab.models.unrolled import UnrolledGAN
from ganlab.models.wgan import WGAN

__all__ = ["ConditionalGAN", "GANModule", "UnrolledGAN", "WGAN"]

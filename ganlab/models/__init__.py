"""LightningModules, one per training dynamic. `GANModule` is the plain two-player GAN."""

from ganlab.models.base import GANModule

__all__ = ["GANModule"]

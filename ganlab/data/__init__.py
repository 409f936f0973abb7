"""Datamodules: every one yields dict batches and knows its shapes (see GANDataModule)."""

from ganlab.data.base import DataError, GANDataModule
from ganlab.data.digits import DigitsDataModule
from ganlab.data.folder import IMAGE_EXTENSIONS, ImageFolderDataModule
from ganlab.data.toy2d import GaussianMixture2DDataModule, grid_centers, ring_centers
from ganlab.data.vision import TorchvisionDataModule

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DigitsDataModule",
    "GANDataModule",
    "GaussianMixture2DDataModule",
    "ImageFolderDataModule",
    "TorchvisionDataModule",
    "grid_centers",
    "ring_centers",
]

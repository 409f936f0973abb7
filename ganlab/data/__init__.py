"""Datamodules: every one yields dict batches and knows its shapes (see GANDataModule)."""

from ganlab.data.base import DataError, GANDataModule
from ganlab.data.digits import DigitsDataModule
from ganlab.data.folder import IMAGE_EXTENSIONS, ImageFolderDataModule
from ganlab.data.paired import AlignedPairsDataModule, WatermarkPairsDataModule
from ganlab.data.photo_sets import photo_data
from ganlab.data.restoration import DenoisingFolderDataModule, InpaintingFolderDataModule
from ganlab.data.superres import SuperResolutionDataModule
from ganlab.data.toy2d import GaussianMixture2DDataModule, grid_centers, ring_centers
from ganlab.data.translation import TranslationDataModule
from ganlab.data.unpaired import UnalignedDataModule
from ganlab.data.vision import TorchvisionDataModule

__all__ = [
    "IMAGE_EXTENSIONS",
    "AlignedPairsDataModule",
    "DataError",
    "DenoisingFolderDataModule",
    "DigitsDataModule",
    "GANDataModule",
    "GaussianMixture2DDataModule",
    "ImageFolderDataModule",
    "InpaintingFolderDataModule",
    "SuperResolutionDataModule",
    "TorchvisionDataModule",
    "TranslationDataModule",
    "UnalignedDataModule",
    "WatermarkPairsDataModule",
    "grid_centers",
    "photo_data",
    "ring_centers",
]

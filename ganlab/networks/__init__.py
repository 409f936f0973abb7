"""Plain `nn.Module` generators and discriminators. Discriminators return logits of shape (B,),
except the PatchGAN, which returns a map of patch logits (B, 1, h, w)."""

from ganlab.networks.biggan import BigGANDiscriminator, BigGANGenerator
from ganlab.networks.conditional import (
    ACGANDiscriminator,
    ConditionalDCGANGenerator,
    ConditionalMLPGenerator,
    ProjectionDCGANDiscriminator,
    ProjectionMLPDiscriminator,
)
from ganlab.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from ganlab.networks.denoiser import ResidualDenoiser
from ganlab.networks.inpainting import GatedInpaintingGenerator
from ganlab.networks.layers import ConditionalBatchNorm2d, spectral_norm_
from ganlab.networks.mlp import MLPDiscriminator, MLPGenerator
from ganlab.networks.packing import Packed
from ganlab.networks.patchgan import PatchGANDiscriminator, patchgan_receptive_field
from ganlab.networks.progan import ProGANDiscriminator, ProGANGenerator
from ganlab.networks.resnet import ResNetDiscriminator, ResNetGenerator
from ganlab.networks.resnet_translator import ResNetTranslator
from ganlab.networks.srresnet import MSRResNet, RRDBNet
from ganlab.networks.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganlab.networks.unet import UnetGenerator

__all__ = [
    "ACGANDiscriminator",
    "BigGANDiscriminator",
    "BigGANGenerator",
    "ConditionalBatchNorm2d",
    "ConditionalDCGANGenerator",
    "ConditionalMLPGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GatedInpaintingGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "MSRResNet",
    "Packed",
    "PatchGANDiscriminator",
    "ProGANDiscriminator",
    "ProGANGenerator",
    "ProjectionDCGANDiscriminator",
    "ProjectionMLPDiscriminator",
    "RRDBNet",
    "ResidualDenoiser",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResNetTranslator",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "UnetGenerator",
    "patchgan_receptive_field",
    "spectral_norm_",
]

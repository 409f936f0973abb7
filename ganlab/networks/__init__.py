"""Plain `nn.Module` generators and discriminators. Discriminators return logits of shape (B,)."""

from ganlab.networks.conditional import (
    ACGANDiscriminator,
    ConditionalDCGANGenerator,
    ConditionalMLPGenerator,
    ProjectionDCGANDiscriminator,
    ProjectionMLPDiscriminator,
)
from ganlab.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from ganlab.networks.layers import ConditionalBatchNorm2d, spectral_norm_
from ganlab.networks.mlp import MLPDiscriminator, MLPGenerator
from ganlab.networks.packing import Packed
from ganlab.networks.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "ACGANDiscriminator",
    "ConditionalBatchNorm2d",
    "ConditionalDCGANGenerator",
    "ConditionalMLPGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "Packed",
    "ProjectionDCGANDiscriminator",
    "ProjectionMLPDiscriminator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "spectral_norm_",
]

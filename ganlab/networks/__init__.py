"""Plain `nn.Module` generators and discriminators. Discriminators return logits of shape (B,)."""

from ganlab.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from ganlab.networks.mlp import MLPDiscriminator, MLPGenerator

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator"]

import pytest
import torch

from ganlab.networks import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution, channels):
    g = DCGANGenerator(latent_dim=16, channels=channels, resolution=resolution, base_width=8)
    d = DCGANDiscriminator(channels=channels, resolution=resolution, base_width=8)
    x = g(torch.randn(5, 16))
    assert x.shape == (5, channels, resolution, resolution)
    assert x.abs().max() <= 1.0  # tanh output, the data range
    assert d(x).shape == (5,)


def test_dcgan_follows_the_paper_widths():
    # 32x32, ngf=64: 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32xC
    g = DCGANGenerator(latent_dim=100, channels=3, resolution=32, base_width=64)
    widths = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [256, 128, 64, 3]
    d = DCGANDiscriminator(channels=3, resolution=64, base_width=64)
    widths = [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 128, 256, 512, 1]


def test_dcgan_rejects_unsupported_resolution():
    with pytest.raises(ValueError, match=r"resolution=48 .*accepted: \(32, 64\)"):
        DCGANGenerator(resolution=48)


def test_mlp_shapes_and_dropout():
    g = MLPGenerator(latent_dim=8, out_shape=(1, 8, 8))
    d = MLPDiscriminator(in_shape=(1, 8, 8), dropout=0.3)
    x = g(torch.randn(3, 8))
    assert x.shape == (3, 1, 8, 8)
    assert d(x).shape == (3,)
    assert any(isinstance(m, torch.nn.Dropout) for m in d.modules())
    toy = MLPGenerator(latent_dim=2, out_shape=(2,), out_activation=None)
    assert toy(torch.randn(4, 2)).shape == (4, 2)
    assert not any(isinstance(m, torch.nn.Tanh) for m in toy.modules())


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match=r"out_activation='relu6' is not one of"):
        MLPGenerator(latent_dim=2, out_shape=(2,), out_activation="relu6")

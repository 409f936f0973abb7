import pytest
import torch

from ganlab.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    Packed,
)


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


def test_mlp_generator_relu_and_batchnorm_options():
    relu = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(8, 8), negative_slope=0.0)
    slopes = [m.negative_slope for m in relu.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.0, 0.0]
    bn = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(8, 8), batch_norm=True)
    norms = [m for m in bn.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [n.num_features for n in norms] == [8, 8]
    # the bias before a BatchNorm is redundant: the norm's shift replaces it
    hidden_linears = [m for m in bn.modules() if isinstance(m, torch.nn.Linear)][:-1]
    assert all(layer.bias is None for layer in hidden_linears)
    assert bn(torch.randn(5, 2)).shape == (5, 2)


def test_packed_discriminator_judges_consecutive_samples_jointly():
    inner = MLPDiscriminator(in_shape=(6,), hidden=(8,), dropout=0.0)
    packed = Packed(inner, pack=3)
    x = torch.randn(6, 2)
    packs = torch.stack([torch.cat([x[0], x[1], x[2]]), torch.cat([x[3], x[4], x[5]])])
    assert torch.equal(packed(x), inner(packs))  # one logit per pack of 3 consecutive samples
    # images stack on the channel axis: a 3-channel pack of 2 is a 6-channel image
    conv = DCGANDiscriminator(channels=6, resolution=32, base_width=8)
    images = torch.randn(4, 3, 32, 32)
    assert torch.equal(Packed(conv, 2)(images), conv(torch.cat([images[0::2], images[1::2]], 1)))
    with pytest.raises(ValueError, match=r"batch of 4 samples does not split into packs of 3"):
        packed(x[:4])
    with pytest.raises(ValueError, match=r"pack=0 must be an integer >= 1"):
        Packed(inner, pack=0)

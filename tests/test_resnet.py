"""SNGAN's ResNet pair, spectral normalization and conditional BatchNorm, on the CPU."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganlab.networks import (
    ACGANDiscriminator,
    ConditionalBatchNorm2d,
    DCGANDiscriminator,
    MLPDiscriminator,
    ProjectionDCGANDiscriminator,
    ProjectionMLPDiscriminator,
    ResNetDiscriminator,
    ResNetGenerator,
    spectral_norm_,
)
from ganlab.networks.resnet import DiscriminatorBlock, OptimizedBlock
from ganlab.train import train
from tests.conftest import SMALL_DCGAN

WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, WEIGHTED)]


def is_spectral_normed(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight")


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resolution", [32, 64])
def test_shapes(resolution, channels, conditional):
    num_classes = 10 if conditional else None
    g = ResNetGenerator(16, channels, resolution, base_width=8, num_classes=num_classes)
    d = ResNetDiscriminator(channels, resolution, base_width=8, num_classes=num_classes)
    labels = torch.randint(0, 10, (5,)) if conditional else None
    x = g(torch.randn(5, 16), labels)
    assert x.shape == (5, channels, resolution, resolution)
    assert x.abs().max() <= 1.0  # tanh output, the data range
    assert d(x, labels).shape == (5,)
    if not conditional:  # the base GANModule calls generator(z) and discriminator(x)
        assert d(g(torch.randn(2, 16))).shape == (2,)


def test_follows_the_papers_cifar10_layout():
    g = ResNetGenerator()  # 32px defaults: 128 -> 4x4x256 -> 3 blocks of 256 -> 3 channels
    assert g.linear.out_features == 4 * 4 * 256 and len(g.blocks) == 3
    d = ResNetDiscriminator()
    assert isinstance(d.blocks[0], OptimizedBlock)
    assert [b.downsample for b in d.blocks[1:]] == [True, False, False]
    assert all(b.conv2.out_channels == 128 for b in d.blocks)
    d64 = ResNetDiscriminator(resolution=64, base_width=8)
    assert [b.downsample for b in d64.blocks[1:]] == [True, True, False, False]
    assert len(ResNetGenerator(resolution=64, base_width=8).blocks) == 4
    assert all(isinstance(b, DiscriminatorBlock) for b in d64.blocks[1:])


@pytest.mark.parametrize("network", [ResNetGenerator, ResNetDiscriminator])
def test_rejects_unsupported_resolution(network):
    with pytest.raises(ValueError, match=r"resolution=48 .*accepted: \(32, 64\)"):
        network(resolution=48)


def test_labels_must_match_conditioning():
    with pytest.raises(ValueError, match="forward needs labels"):
        ResNetGenerator(base_width=8, num_classes=10)(torch.randn(2, 128))
    with pytest.raises(ValueError, match="unconditional"):
        ResNetDiscriminator(base_width=8)(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_spectral_norm_covers_every_weight_and_bounds_it_by_one():
    d = ResNetDiscriminator(channels=3, base_width=16, num_classes=10)
    layers = weighted_layers(d)
    assert any(isinstance(m, nn.Embedding) for m in layers)  # the projection is normalized too
    assert all(is_spectral_normed(m) for m in layers)
    x, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    d.train()
    for _ in range(5):  # each train-mode forward runs one power iteration per layer
        d(x, labels)
    d.eval()  # reading the weights now runs no further iteration
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, rel=0.05), layer


def test_spectral_norm_is_idempotent_and_optional():
    d = spectral_norm_(ResNetDiscriminator(base_width=8))
    assert all(len(m.parametrizations.weight) == 1 for m in weighted_layers(d))
    plain = ResNetDiscriminator(base_width=8, spectral_norm=False)
    assert not any(is_spectral_normed(m) for m in weighted_layers(plain))


def test_projection_uses_the_labels():
    d = ResNetDiscriminator(channels=1, base_width=8, num_classes=10).eval()
    x = torch.randn(4, 1, 32, 32)
    same = d(x, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(same, d(x, torch.tensor([0, 1, 2, 3])))
    assert not torch.allclose(same, d(x, torch.tensor([4, 5, 6, 7])))


def test_conditional_batch_norm_starts_plain_and_then_uses_the_labels():
    g = ResNetGenerator(16, 1, 32, base_width=8, num_classes=10).eval()
    z = torch.randn(4, 16)
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    # Gain 1 and bias 0 for every class: at init the labels do not change anything yet.
    assert torch.equal(g(z, a), g(z, b))
    with torch.no_grad():  # what training does: the classes' gains and biases drift apart
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.weight.normal_(1.0, 0.2)
                m.bias.weight.normal_(0.0, 0.2)
    assert torch.equal(g(z, a), g(z, a))
    assert not torch.allclose(g(z, a), g(z, b))


def test_dcgan_and_mlp_discriminators_take_the_switch():
    for d in (
        DCGANDiscriminator(channels=1, base_width=8, batch_norm=False, spectral_norm=True),
        MLPDiscriminator(in_shape=(1, 8, 8), hidden=(16,), spectral_norm=True),
        ProjectionDCGANDiscriminator(1, 32, 10, base_width=8, batch_norm=False, spectral_norm=True),
        ACGANDiscriminator(1, 32, 10, base_width=8, batch_norm=False, spectral_norm=True),
        ProjectionMLPDiscriminator((1, 8, 8), 10, hidden=(16,), spectral_norm=True),
    ):
        assert all(is_spectral_normed(m) for m in weighted_layers(d))
    assert not any(is_spectral_normed(m) for m in weighted_layers(DCGANDiscriminator()))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.discriminator.batch_norm=false", *SMALL_DCGAN],
        ["model=gan_mlp", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]"],
        ["model=cgan", "model.discriminator.batch_norm=false", *SMALL_DCGAN],
    ],
    ids=["dcgan", "gan_mlp", "cgan"],
)
def test_spectral_norm_discriminators_train(make_config, tmp_path, overrides):
    # `+`: the switch is a constructor default, not a key of the dcgan and gan_mlp configs.
    train(make_config("+model.discriminator.spectral_norm=true", *overrides))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(".parametrizations.weight.original" in key for key in ckpt["state_dict"])
    assert ckpt["ganlab"]["progress"]["d_steps"] == 3


def test_sngan_trains_through_the_real_config(make_config, tmp_path):
    cfg = make_config(
        "model=sngan",
        "loss=hinge",
        "model.generator.base_width=16",
        "model.discriminator.base_width=16",
        "model.n_critic=2",  # three batches: three D steps and one G step
    )
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganlab"]["progress"] == {"images_seen": 48, "d_steps": 3, "g_steps": 1}
    assert ckpt["ganlab"]["config"]["model"]["discriminator"]["spectral_norm"] is True

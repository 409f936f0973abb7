"""ResidualDenoiser (DnCNN's residual learning on FFDNet's pixel-unshuffled input): the identity at
initialisation, the sizes its unshuffle allows, its option errors, and that it learns to denoise
inside PairedTranslationGAN."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses import BCELoss
from ganlab.models import PairedTranslationGAN
from ganlab.networks import PatchGANDiscriminator, ResidualDenoiser
from tests.training import fit


def denoiser_gan(generator: nn.Module, lr: float = 2e-3, **options) -> PairedTranslationGAN:
    adam = partial(torch.optim.Adam, lr=lr)
    return PairedTranslationGAN(
        generator=generator,
        discriminator=PatchGANDiscriminator(6, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=adam,
        d_optimizer=adam,
        **options,
    )


def noisy_pairs(count: int = 32, size: int = 16, sigma: float = 0.2) -> dict[str, torch.Tensor]:
    """Smooth images and their noisy copies (sigma on [-1, 1])."""
    generator = torch.Generator().manual_seed(3)
    clean = nn.functional.interpolate(
        torch.rand(count, 3, 4, 4, generator=generator) * 1.6 - 0.8, size=size, mode="bilinear"
    )
    noise = torch.randn(clean.shape, generator=generator) * sigma
    return {"source": clean + noise, "target": clean}


@pytest.mark.parametrize("unshuffle", [1, 2])
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_untrained_network_returns_its_input_exactly(unshuffle, norm):
    torch.manual_seed(0)
    network = ResidualDenoiser(3, depth=4, base_width=8, norm=norm, unshuffle=unshuffle)
    images = torch.randn(2, 3, 8, 12) * 2  # beyond [-1, 1]: noisy inputs are not clipped
    assert torch.equal(network(images), images)


@pytest.mark.parametrize(
    ("unshuffle", "size"),
    [(1, (17, 23)), (1, (16, 16)), (2, (18, 22)), (2, (64, 64)), (4, (20, 12))],
)
def test_output_has_the_input_shape_for_sizes_the_unshuffle_allows(unshuffle, size):
    network = ResidualDenoiser(1, depth=3, base_width=4, unshuffle=unshuffle)
    nn.init.normal_(network.last.weight)  # a non-zero noise estimate
    images = torch.rand(2, 1, *size)
    output = network(images)
    assert output.shape == images.shape
    assert not torch.equal(output, images)


def test_sizes_the_unshuffle_cannot_take_are_refused_with_sizes_that_work():
    model = denoiser_gan(ResidualDenoiser(3, depth=3, base_width=4, unshuffle=2))
    assert model.translate(torch.zeros(1, 3, 18, 22)).shape == (1, 3, 18, 22)
    with pytest.raises(ConfigError, match=r"17x22 do not fit ResidualDenoiser.*multiples of 2"):
        model.translate(torch.zeros(1, 3, 17, 22))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm": "instance"}, r"norm='instance' is not supported; accepted: \('batch', 'none'\)"),
        ({"unshuffle": 0}, r"unshuffle=0 is not accepted: give an integer >= 1"),
        ({"depth": 1}, r"depth=1 is not accepted: give an integer >= 2"),
        ({"base_width": 2.5}, r"base_width=2.5 is not accepted: give an integer >= 1"),
        ({"out_channels": 4}, r"out_channels must equal channels; got channels=3, out_chann"),
    ],
)
def test_bad_options_name_what_is_accepted(options, message):
    with pytest.raises(ConfigError, match=message):
        ResidualDenoiser(3, **options)


def psnr(images: torch.Tensor, target: torch.Tensor) -> float:
    mse = ((images.clamp(-1, 1) - target) / 2).pow(2).mean()
    return float(-10 * torch.log10(mse))


def test_learns_to_remove_noise_with_a_small_gan_term():
    torch.manual_seed(0)
    generator = ResidualDenoiser(3, depth=4, base_width=16, norm="none")
    model = denoiser_gan(generator, lr=1e-2, l1_weight=0.0, l2_weight=1.0, gan_weight=0.01)
    data = noisy_pairs()
    noisy = psnr(data["source"], data["target"])
    fit(model, data, steps=60)
    denoised = psnr(model.translate(data["source"]), data["target"])
    assert denoised > noisy + 3, (noisy, denoised)

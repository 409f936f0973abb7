import math

import pytest
import torch

from ganlab import losses
from ganlab.errors import ConfigError

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bce_matches_the_textbook_cross_entropy():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    d = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    g = (softplus(-0.5) + softplus(3.0)) / 2
    assert losses.bce_d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert losses.bce_g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(REAL, torch.ones(2)) + bce(FAKE, torch.zeros(2))
    assert losses.bce_d_loss(REAL, FAKE).item() == pytest.approx(expected.item(), rel=1e-6)


def test_bce_generator_loss_is_non_saturating():
    # When D confidently rejects fakes, -log D(G(z)) still has a large gradient.
    fake = torch.tensor([-10.0], requires_grad=True)
    losses.bce_g_loss(fake).backward()
    assert fake.grad.abs().item() > 0.99


def test_hinge():
    # relu(1-2)=0, relu(1+1)=2 -> 1.0; relu(1+0.5)=1.5, relu(1-3)=0 -> 0.75
    assert losses.hinge_d_loss(REAL, FAKE).item() == pytest.approx(1.75)
    assert losses.hinge_g_loss(FAKE).item() == pytest.approx(1.25)


def test_wasserstein():
    # mean fake = -1.25, mean real = 0.5
    assert losses.wasserstein_d_loss(REAL, FAKE).item() == pytest.approx(-1.75)
    assert losses.wasserstein_g_loss(FAKE).item() == pytest.approx(1.25)


def test_lsgan():
    # 0.5*mean((r-1)^2) = 0.5*(1+4)/2 = 1.25; 0.5*mean(f^2) = 0.5*(0.25+9)/2 = 2.3125
    assert losses.lsgan_d_loss(REAL, FAKE).item() == pytest.approx(3.5625)
    # 0.5*mean((f-1)^2) = 0.5*(0.25+16)/2 = 4.0625
    assert losses.lsgan_g_loss(FAKE).item() == pytest.approx(4.0625)


@pytest.mark.parametrize(
    "cls, d_fn, g_fn",
    [
        (losses.BCELoss, losses.bce_d_loss, losses.bce_g_loss),
        (losses.HingeLoss, losses.hinge_d_loss, losses.hinge_g_loss),
        (losses.WassersteinLoss, losses.wasserstein_d_loss, losses.wasserstein_g_loss),
        (losses.LSGANLoss, losses.lsgan_d_loss, losses.lsgan_g_loss),
    ],
)
def test_loss_classes_bind_their_function_pair(cls, d_fn, g_fn):
    loss = cls()
    assert torch.equal(loss.d_loss(REAL, FAKE), d_fn(REAL, FAKE))
    assert torch.equal(loss.g_loss(FAKE), g_fn(FAKE))


# Relativistic losses (Jolicoeur-Martineau, 2018) on the same logits, in float64:
# mean(REAL) = 0.5 and mean(FAKE) = -1.25, so REAL - mean(FAKE) = [3.25, 0.25] and
# FAKE - mean(REAL) = [0.0, -3.5].
REAL64, FAKE64 = REAL.double(), FAKE.double()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_rsgan_compares_each_real_with_its_paired_fake():
    # D: -log sigmoid(r - f) = softplus(f - r); G: softplus(r - f); pairs (2, 0.5), (-1, -3)
    d = mean([softplus(0.5 - 2.0), softplus(-3.0 + 1.0)])
    g = mean([softplus(2.0 - 0.5), softplus(-1.0 + 3.0)])
    assert losses.rsgan_d_loss(REAL64, FAKE64).item() == pytest.approx(d, rel=1e-12)
    assert losses.rsgan_g_loss(FAKE64, REAL64).item() == pytest.approx(g, rel=1e-12)


def test_ragan_compares_with_the_other_kinds_average():
    # D: softplus(-(r - mean f)) + softplus(f - mean r); G swaps real and fake.
    d = mean([softplus(-3.25), softplus(-0.25)]) + mean([softplus(0.0), softplus(-3.5)])
    g = mean([softplus(-0.0), softplus(3.5)]) + mean([softplus(3.25), softplus(0.25)])
    assert losses.ragan_d_loss(REAL64, FAKE64).item() == pytest.approx(d, rel=1e-12)
    assert losses.ragan_g_loss(FAKE64, REAL64).item() == pytest.approx(g, rel=1e-12)


def test_ralsgan():
    # D: mean((r - mean f - 1)^2) + mean((f - mean r + 1)^2)
    #    = (2.25^2 + 0.75^2)/2 + (1^2 + 2.5^2)/2 = 2.8125 + 3.625
    assert losses.ralsgan_d_loss(REAL64, FAKE64).item() == pytest.approx(6.4375, rel=1e-12)
    # G: mean((f - mean r - 1)^2) + mean((r - mean f + 1)^2)
    #    = (1^2 + 4.5^2)/2 + (4.25^2 + 1.25^2)/2 = 10.625 + 9.8125
    assert losses.ralsgan_g_loss(FAKE64, REAL64).item() == pytest.approx(20.4375, rel=1e-12)


@pytest.mark.parametrize("g_fn", [losses.rsgan_g_loss, losses.ragan_g_loss, losses.ralsgan_g_loss])
def test_relativistic_generator_loss_depends_on_the_real_logits(g_fn):
    fake = FAKE64.clone().requires_grad_(True)
    real = REAL64.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(g_fn, (fake, real))  # analytic = numeric gradients
    g_fn(fake, real).backward()
    assert real.grad.abs().min() > 0.01  # every real logit moves the generator's loss
    assert g_fn(FAKE64, REAL64 + 1.0).item() != pytest.approx(g_fn(FAKE64, REAL64).item())
    # RSGAN: d/dr_i mean softplus(r - f) = sigmoid(r_i - f_i) / 2
    if g_fn is losses.rsgan_g_loss:
        assert torch.allclose(real.grad, torch.sigmoid(REAL64 - FAKE64) / 2)


@pytest.mark.parametrize(
    "cls, d_fn, g_fn",
    [
        (losses.RSGANLoss, losses.rsgan_d_loss, losses.rsgan_g_loss),
        (losses.RaGANLoss, losses.ragan_d_loss, losses.ragan_g_loss),
        (losses.RaLSGANLoss, losses.ralsgan_d_loss, losses.ralsgan_g_loss),
    ],
)
def test_relativistic_classes_bind_their_pair_and_ask_for_real_logits(cls, d_fn, g_fn):
    loss = cls()
    assert loss.needs_real_logits and not losses.BCELoss.needs_real_logits
    assert torch.equal(loss.d_loss(REAL, FAKE), d_fn(REAL, FAKE))
    assert torch.equal(loss.g_loss(FAKE, REAL), g_fn(FAKE, REAL))
    with pytest.raises(ConfigError, match=f"loss={loss.name} compares fakes with reals"):
        loss.g_loss(FAKE)

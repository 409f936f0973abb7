import math

import pytest
import torch

from ganlab import losses

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

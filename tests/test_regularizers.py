"""Gradient penalty, R1, weight clipping, unrolling and DiffAugment: maths and wiring."""

import csv

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses import DiffAugment, GradientPenalty, gradient_penalty, r1_penalty
from ganlab.losses.augment import cutout, translation
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, run_command


class LinearCritic(nn.Module):
    """D(x) = w . x: its input gradient is w everywhere, so the penalties are known exactly."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, cond=None):
        self.inputs.append(x.detach().clone())
        return x.flatten(1) @ self.weight


def test_gradient_penalty_is_taken_on_interpolates_and_trains_the_critic():
    torch.manual_seed(0)
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    critic = LinearCritic(w)
    real, fake = torch.randn(64, 2), torch.randn(64, 2) + 10
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx((5 - 1) ** 2)
    (x,) = critic.inputs  # each point lies on the segment between its real and fake sample
    alpha = (x - fake) / (real - fake)
    assert torch.allclose(alpha[:, 0], alpha[:, 1], atol=1e-4)
    assert ((alpha >= -1e-5) & (alpha <= 1 + 1e-5)).all() and alpha.std() > 0.1
    penalty.backward()  # double backward: the penalty's gradient reaches the critic's weights
    assert torch.allclose(critic.weight.grad, 2 * (5 - 1) * w / 5)


def test_gradient_penalty_under_bf16_autocast():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    real, fake = torch.randn(16, 3, 2, 2), torch.randn(16, 3, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(lambda x, c: critic(x).squeeze(1), real, fake)
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty)
    penalty.backward()
    # Every weight matrix shapes the input gradient (the last bias does not: no grad for it).
    weights = [p for p in critic.parameters() if p.dim() == 2]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)


def test_r1_is_the_squared_gradient_norm_on_reals():
    critic = LinearCritic(torch.tensor([3.0, 4.0]))
    assert r1_penalty(critic, torch.randn(8, 2)).item() == pytest.approx(25.0)


def logged(run_dir, key):
    (path,) = (run_dir / "csv").glob("version_*/metrics.csv")
    return [float(row[key]) for row in csv.DictReader(path.open()) if row.get(key)]


def test_lazy_r1_runs_every_interval_steps_with_its_weight_scaled(make_config):
    cfg = make_config(
        *SMALL_DCGAN,
        "regularizers=r1",
        "regularizers.r1.interval=4",
        "regularizers.r1._target_=tests.support.CountingR1",
        "trainer.limit_train_batches=8",
    )
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    (r1,) = model.d_regularizers
    assert r1.applied_at == [0, 4]
    real = torch.randn(4, 1, 32, 32)
    stats = {}
    model.d_steps = 8
    total = model.d_regularization(real, real, None, stats)
    assert total.item() == pytest.approx(4 * stats["train/r1"].item())  # lazy: x interval
    model.d_steps, stats = 9, {}
    assert model.d_regularization(real, real, None, stats).item() == 0 and not stats


def test_wgan_gp_composes_and_trains(make_config, tmp_path):
    cfg = make_config("model=wgan_gp", *SMALL_DCGAN)
    assert cfg.model.n_critic == 5 and cfg.model.discriminator.batch_norm is False
    train(cfg)
    assert all(value >= 0 for value in logged(tmp_path / "run", "train/gp"))
    assert len(logged(tmp_path / "run", "train/gp")) == 3


@pytest.mark.slow
def test_gradient_penalty_trains_under_ddp_with_bf16(tmp_path):
    result = run_command(
        "ganlab-train",
        *FAST,
        *SMALL_DCGAN,
        "model=wgan_gp",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=bf16-mixed",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "train" / "wgan_gp_digits").iterdir()
    penalties = logged(run_dir, "train/gp")
    assert len(penalties) == 3 and all(torch.isfinite(torch.tensor(penalties)))


def test_wgan_clips_every_critic_weight(make_config):
    cfg = make_config("model=wgan", *SMALL_DCGAN, "model.clip_value=0.02")
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    weights = torch.cat([p.flatten() for p in model.discriminator.parameters()])
    assert weights.abs().max() <= 0.02 and weights.abs().max() > 0.019


@pytest.mark.parametrize("second_order", [True, False])
def test_unrolled_gan_trains_on_toy_data(make_config, tmp_path, second_order):
    cfg = make_config(
        "model=toy_mlp",
        "data=toy_ring",
        "model._target_=ganlab.models.UnrolledGAN",
        "+model.unrolled_steps=3",
        f"+model.second_order={second_order}",
    )
    train(cfg)
    assert len(logged(tmp_path / "run", "train/g_loss")) == 3


def test_unrolling_changes_the_generator_loss_and_zero_steps_does_not(make_config):
    torch.manual_seed(0)
    model = instantiate(
        make_config(
            "model=toy_mlp",
            "data=toy_ring",
            "model._target_=ganlab.models.UnrolledGAN",
            "+model.unrolled_steps=0",
            "+model.unroll_lr=0.5",
        ).model
    )
    fake, real = model.generator(torch.randn(32, 2)), torch.randn(32, 2)
    plain, _ = model.g_loss(fake, real=real)
    model.unrolled_steps = 2
    unrolled, _ = model.g_loss(fake, real=real)
    assert plain.item() == pytest.approx(model.loss.g_loss(model.discriminator(fake)).item())
    assert unrolled.item() != pytest.approx(plain.item())
    unrolled.backward()
    assert all(p.grad is not None for p in model.generator.parameters())


def test_diffaugment_is_differentiable_and_checks_its_policy():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    DiffAugment()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match=r"augment=diffaugment .* shape \(5, 2\)"):
        DiffAugment()(torch.randn(5, 2))  # 2D points: an error, not a silent no-op
    with pytest.raises(ValueError, match="policy='color,flip'"):
        DiffAugment("color,flip")


def test_translation_shifts_content_and_cutout_removes_a_square():
    torch.manual_seed(0)
    image = torch.arange(1.0, 65.0).view(1, 1, 8, 8)
    shifted = translation(image, ratio=0.25)
    # the shift is an integer offset: the nonzero part is a block of the original
    nonzero = shifted[shifted != 0]
    assert set(nonzero.tolist()) <= set(image.flatten().tolist())
    holes = (cutout(torch.ones(100, 1, 8, 8), ratio=0.5) == 0).float().mean(dim=(1, 2, 3))
    assert torch.allclose(holes, torch.full((100,), 0.25))


def test_diffaugment_switch_trains_any_model(make_config, tmp_path):
    cfg = make_config(*SMALL_DCGAN, "augment=diffaugment")
    assert instantiate(cfg.model).augment.policy == ["color", "translation", "cutout"]
    train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_regularizer_interval_is_checked():
    with pytest.raises(ValueError, match="gp interval=0 must be an integer >= 1"):
        GradientPenalty(interval=0)

"""ADA: the augmentation pipeline's identities (p = 0 is the identity, R1 through it has a
second derivative, the geometry is the official one), the controller of p in closed form, p and
its running sums in checkpoints (resume equals straight through), and StyleGAN2's gradient
sanitising on a real step."""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from ganlab.checkpoint import load_model
from ganlab.errors import ConfigError, NonFiniteLossError
from ganlab.losses import AdaptiveAugment, DiffAugment
from ganlab.losses.ada import COLOR, GEOMETRIC, _rotate2d, _scale2d, _translate2d
from ganlab.models import StyleGAN2
from ganlab.train import train
from tests.test_stylegan2_module import random_images, tiny_stylegan2
from tests.training import fit

NO_OPS = dict.fromkeys(GEOMETRIC + COLOR, 0.0)
TINY_STYLEGAN2 = [
    "model.latent_dim=16",
    "model.generator.w_dim=16",
    *[
        f"model.{player}.{key}={value}"
        for player in ("generator", "discriminator")
        for key, value in (("channel_base", 64), ("channel_max", 8), ("mapping_layers", 2))
    ],
]


def only(*names: str, **kwargs) -> AdaptiveAugment:
    """A fixed-p pipeline with only the named transformations."""
    settings = {**NO_OPS, **dict.fromkeys(names, 1.0), "target": None, "initial_p": 1.0}
    return AdaptiveAugment(**{**settings, **kwargs})


def smooth_image(size: int = 32) -> torch.Tensor:
    """A float64 (1, 1, size, size) image of low spatial frequency."""
    axis = torch.arange(size, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    image = torch.sin(cols / size * 2 * math.pi * 1.3 + 0.4) * torch.cos(rows / size * 4.4 + 0.2)
    return image.view(1, 1, size, size)


def seeded(function, seed: int = 0):
    """`function` with the same random draws at every call (gradcheck calls it many times)."""

    def call(*args):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return function(*args)

    return call


@pytest.fixture(autouse=True)
def fixed_seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------- the pipeline
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_the_identity_bit_exact(dtype, channels):
    augment = AdaptiveAugment(target=None, initial_p=0.0)  # every transformation on
    images = (torch.rand(8, channels, 16, 16, dtype=dtype) * 2 - 1).requires_grad_(True)
    out = augment(images)
    assert out.dtype == dtype and torch.equal(out, images)
    out.square().sum().backward()
    assert torch.equal(images.grad, 2 * images.detach())


def test_p_one_changes_every_image():
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    out = AdaptiveAugment(target=None, initial_p=1.0)(images)
    assert out.shape == images.shape
    assert ((out - images).flatten(1).abs().amax(dim=1) > 1e-3).all()


def test_r1_through_the_pipeline_at_p_one_has_a_second_derivative():
    augment = AdaptiveAugment(target=None, initial_p=1.0)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)

    def discriminator(images, weight):
        return F.softplus(F.conv2d(images, weight)).sum()

    def r1(x, weight):
        (grad,) = torch.autograd.grad(discriminator(augment(x), weight), x, create_graph=True)
        return grad.square().sum()

    # random projections of the Jacobians (fast_mode): the full ones take minutes on a CPU
    assert torch.autograd.gradgradcheck(seeded(augment), (x,), fast_mode=True)
    # R1's gradient, by D's weights and by the input, against finite differences
    assert torch.autograd.gradcheck(seeded(r1), (x, weight), fast_mode=True)


def test_the_geometry_is_the_official_one():
    augment = only()
    image = smooth_image()
    one = torch.ones(1, dtype=torch.float64)
    interior = (..., slice(4, 28), slice(4, 28))
    identity = augment._warp(image, torch.eye(3, dtype=torch.float64)[None])
    torch.testing.assert_close(identity, image, rtol=0, atol=1e-10)  # sym6 is orthogonal
    # integer translations move pixels exactly (the map sends output to input pixels)
    shifted = augment._warp(image, _translate2d(-2 * one, 1 * one, one))
    expected = image.roll(shifts=(-1, 2), dims=(2, 3))
    torch.testing.assert_close(shifted[interior], expected[interior], rtol=0, atol=1e-10)
    # flips and quarter turns, up to the small asymmetry of the sym6 filter (as officially)
    flipped = augment._warp(image, _scale2d(-one, one, one))
    assert (flipped - image.flip(3))[interior].abs().max() < 0.03
    turned = augment._warp(image, _rotate2d(math.pi / 2 * one, one))
    assert (turned - torch.rot90(image, 1, (2, 3)))[interior].abs().max() < 0.03


def test_brightness_and_grayscale_colour():
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    out = only("brightness")(images)
    offsets = (out - images).flatten(1)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets))  # one offset each
    assert offsets[:, 0].abs().min() > 0
    gray = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    assert torch.equal(only("hue", "saturation")(gray), gray)  # RGB only, as officially
    contrast = only("contrast")(gray)
    ratio = contrast / gray
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))


# ---------------------------------------------------------------------- the controller
def observe(augment: AdaptiveAugment, sign: float, steps: int, batch: int = 8) -> dict:
    stats = {}
    for _ in range(steps):
        stats = augment.observe_real_logits(torch.full((batch,), sign * 0.7))
    return stats


def test_p_moves_by_the_closed_form_step_every_interval():
    augment = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1.0)
    observe(augment, +1, steps=3)
    assert augment.p.item() == 0  # not yet an interval
    stats = observe(augment, +1, steps=1)  # r_t = 1 > 0.6: up by 4 steps x 8 images / 1000
    assert augment.p.item() == pytest.approx(0.032) and augment.rt.item() == 1
    assert stats["train/ada_p"].item() == pytest.approx(0.032)
    assert stats["train/ada_rt"].item() == 1
    for n in range(2, 6):
        observe(augment, +1, steps=4)
        assert augment.p.item() == pytest.approx(min(1.0, n * 4 * 8 / 1000))
    observe(augment, -1, steps=4)  # the sums restarted: r_t is this interval's alone
    assert augment.rt.item() == -1 and augment.p.item() == pytest.approx(0.128)


def test_p_stays_in_zero_one():
    low = AdaptiveAugment(target=0.6, interval=1, speed_kimg=0.001)
    observe(low, -1, steps=3)
    assert low.p.item() == 0
    high = AdaptiveAugment(target=0.6, interval=1, speed_kimg=0.001, initial_p=0.9)
    observe(high, +1, steps=3)
    assert high.p.item() == 1


def test_fixed_p_never_moves():
    augment = AdaptiveAugment(target=None, initial_p=0.3)
    observe(augment, +1, steps=20)
    assert augment.p.item() == pytest.approx(0.3)


def test_running_sums_resume_mid_interval():
    straight = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1.0)
    observe(straight, +1, steps=2)
    state = straight.state_dict()
    assert {"p", "rt", "_extra_state"} <= set(state)
    assert state["_extra_state"]["pending_steps"] == 2
    resumed = AdaptiveAugment(target=0.6, interval=4, speed_kimg=1.0)
    resumed.load_state_dict(state)
    for augment in (straight, resumed):
        observe(augment, -1, steps=1)
        observe(augment, +1, steps=1)  # the interval ends: r_t = (2 - 1 + 1) / 4 = 0.5
    assert resumed.rt.item() == straight.rt.item() == 0.5
    assert resumed.p.item() == straight.p.item() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": 1.5}, "augment.target=1.5 must be in"),
        ({"interval": 0}, "augment.interval=0 must be an integer >= 1"),
        ({"speed_kimg": 0}, "augment.speed_kimg=0 must be > 0"),
        ({"initial_p": -0.1}, r"augment.initial_p=-0.1 must be in \[0, 1\]"),
        ({"hue": -1}, "augment.hue=-1.0 must be >= 0"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AdaptiveAugment(**kwargs)


@pytest.mark.parametrize("option", ["ada", "diffaugment"])
def test_both_augmentations_refuse_points_naming_the_shape_and_the_option(option):
    augment = AdaptiveAugment(target=None) if option == "ada" else DiffAugment()
    with pytest.raises(ConfigError) as refused:
        augment(torch.zeros(4, 2))
    assert str(refused.value) == (
        f"augment={option} transforms images of shape (B, C, H, W), but the discriminator input "
        "has shape (4, 2); use augment=none for data that are not images (toy_ring, toy_grid)"
    )


def test_inputs_it_cannot_transform_are_config_errors():
    with pytest.raises(ConfigError, match="got 2 channels"):
        AdaptiveAugment(target=None, initial_p=1.0)(torch.zeros(4, 2, 8, 8))


def test_an_adaptive_p_that_is_never_told_d_real_is_refused():
    augment = AdaptiveAugment()
    images = torch.zeros(2, 3, 8, 8)
    augment(images), augment(images)  # D(real) and D(fake) of the first D step
    with pytest.raises(ConfigError, match="does not report"):
        augment(images)
    told = AdaptiveAugment()
    told(images), told(images)
    told.observe_real_logits(torch.ones(2))
    for _ in range(5):
        told(images)


# ---------------------------------------------------------------------- in training
def metric_column(run_dir: Path, name: str) -> list[float]:
    (path,) = run_dir.rglob("metrics.csv")
    with open(path) as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


# p starts at 0.5 and each adjustment (2 D steps of 16 images) moves it by 32 / 320 = 0.1.
ADA_RUN = [
    "model=stylegan2",
    "augment=ada",
    "data=digits",
    "data.resolution=16",
    *TINY_STYLEGAN2,
    "augment.interval=2",
    "augment.speed_kimg=0.32",
    "augment.initial_p=0.5",
    "callbacks.sample_quality=null",
]


def test_stylegan2_with_ada_on_digits_trains_moving_and_logging_p(make_config, tmp_path):
    cfg = make_config(*ADA_RUN)
    train(cfg)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    assert state["augment._extra_state"]["pending_steps"] == 1  # 3 steps, adjusted after 2
    p = state["augment.p"].item()
    assert p == pytest.approx(0.4) or p == pytest.approx(0.6)
    assert state["augment.rt"].abs().item() <= 1
    logged = metric_column(tmp_path / "run", "train/ada_p")
    assert logged == pytest.approx([0.5, p, p])  # logged after each D step's adjustment
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")  # as ganlab-sample
    assert model.augment.p.item() == p and model.sample(2).shape == (2, 1, 16, 16)


@pytest.mark.slow
def test_stylegan2_with_ada_resumes_its_p_exactly(make_config, tmp_path):
    """6 D steps straight, or 3, a checkpoint between two adjustments of p, and 3 more."""
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    train(make_config(*ADA_RUN, "trainer.max_epochs=2", output_dir=straight_dir))
    train(make_config(*ADA_RUN, "trainer.max_epochs=1", output_dir=resumed_dir))
    half = resumed_dir / "checkpoints" / "last.ckpt"
    ckpt = f"ckpt_path={half}"
    train(make_config(*ADA_RUN, "trainer.max_epochs=2", ckpt, output_dir=resumed_dir))

    straight = torch.load(straight_dir / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(half, weights_only=True)
    assert straight["ganlab"]["progress"] == resumed["ganlab"]["progress"]
    assert straight["ganlab"]["progress"]["d_steps"] == 6
    p = straight["state_dict"]["augment.p"].item()
    assert round((p - 0.5) / 0.1) % 2 == 1  # three adjustments of 0.1 from 0.5
    for key, value in straight["state_dict"].items():
        if key.startswith(("augment.", "discriminator.", "generator.")):
            if key.endswith("_extra_state"):
                assert value == resumed["state_dict"][key], key
            else:
                assert torch.equal(value, resumed["state_dict"][key]), key


def test_the_ada_cifar10_experiment_composes(make_config):
    cfg = make_config("experiment=stylegan2_ada_cifar10")
    augment = instantiate(cfg.augment)
    assert isinstance(augment, AdaptiveAugment)
    assert (augment.target, augment.interval, augment.speed_kimg) == (0.6, 4, 500.0)
    assert augment.p.item() == 0 and all(v == 1 for v in augment.multipliers.values())
    assert cfg.regularizers.r1.gamma == 0.01 and cfg.model.pl_weight == 0
    assert cfg.model.discriminator.mbstd_group_size == 32 and cfg.data.num_classes == 10
    assert cfg.model.sanitize_gradients is True


# ---------------------------------------------------------------------- gradient sanitising
def poisoned_step(sanitize: bool) -> tuple[StyleGAN2, torch.Tensor]:
    """One real training step of a tiny StyleGAN2 whose first D bias gets NaN and +inf
    gradient entries; returns the model and that parameter."""
    model = tiny_stylegan2(sanitize_gradients=sanitize)
    param = next(p for name, p in model.discriminator.named_parameters() if "bias" in name)

    def poison(grad):
        grad = grad.clone()
        grad.view(-1)[0], grad.view(-1)[1] = float("nan"), float("inf")
        return grad

    param.register_hook(poison)
    fit(model, random_images(8), steps=1)
    return model, param


def test_sanitising_turns_non_finite_gradients_into_official_values():
    model, param = poisoned_step(sanitize=True)
    d_opt = model.trainer.optimizers[1]
    moment = d_opt.state[param]["exp_avg"].view(-1)  # beta1 = 0: the step's gradient itself
    assert moment[0].item() == 0 and moment[1].item() == 1e5
    assert all(torch.isfinite(p).all() for p in model.discriminator.parameters())


def test_without_sanitising_the_poisoned_gradient_reaches_the_weights():
    with pytest.raises(NonFiniteLossError, match="train/g_loss became nan at D step 1"):
        poisoned_step(sanitize=False)  # D's weights hold NaN, so G's loss is NaN


# ---------------------------------------------------------------------- DDP
def _adjust_in_process(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    try:
        augment = AdaptiveAugment(target=0.6, interval=2, speed_kimg=1.0, initial_p=0.5)
        # process 0: every real judged real; process 1: 2 of 8
        logits = torch.ones(8) if rank == 0 else torch.tensor([1.0, 1.0] + [-1.0] * 6)
        observe_steps = [augment.observe_real_logits(logits) for _ in range(2)]
        torch.save(dict(observe_steps[-1]), f"{out_dir}/{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two processes start: seconds of imports
def test_under_ddp_p_follows_the_sign_sums_of_every_process(tmp_path):
    torch.multiprocessing.spawn(
        _adjust_in_process, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    for rank in (0, 1):
        stats = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        # r_t = (16 - 8) / 32 = 0.25 < 0.6: p drops by 32 images / 1000 on both processes
        assert stats["train/ada_rt"].item() == pytest.approx(0.25)
        assert stats["train/ada_p"].item() == pytest.approx(0.5 - 0.032)


# ---------------------------------------------------------------------- mechanism
def digit_images(resolution: int = 16) -> torch.Tensor:
    """scikit-learn's 1797 digits in [-1, 1], (N, 1, resolution, resolution), in a fixed order."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 8 - 1
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return F.interpolate(images[order], size=resolution, mode="bilinear", align_corners=False)


def d_gap_after_training(augment: AdaptiveAugment, steps: int) -> tuple[float, list]:
    """Train a tiny StyleGAN2 (D wider than G) on 100 digits; D's mean logit on those 100 minus
    that on 500 held-out digits, unaugmented, and the (p, r_t) of every adjustment."""
    from ganlab.losses import R1, BCELoss
    from ganlab.networks import StyleGAN2Discriminator, StyleGAN2Generator

    images = digit_images()
    train_set, held_out = images[:100], images[100:600]
    shape = dict(channels=1, resolution=16)
    model = StyleGAN2(
        StyleGAN2Generator(
            latent_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=16, **shape
        ),
        StyleGAN2Discriminator(
            mbstd_group_size=4, mapping_layers=2, channel_base=1024, channel_max=64, **shape
        ),
        BCELoss(),
        functools.partial(torch.optim.Adam, lr=0.0025, betas=(0.0, 0.99)),
        functools.partial(torch.optim.Adam, lr=0.0025, betas=(0.0, 0.99)),
        latent_dim=32,
        ema_kimg=1.0,
        pl_weight=0,
        d_regularizers={"r1": R1(0.01, 16)},
        augment=augment,
    )
    history = []
    adjust = augment.adjust
    augment.adjust = lambda: (adjust(), history.append((augment.p.item(), augment.rt.item())))
    fit(model, {"image": train_set.repeat(steps * 8 // 100 + 1, 1, 1, 1)[: steps * 8]}, steps)
    model.discriminator.eval()
    with torch.no_grad():
        gap = model.discriminator(train_set).mean() - model.discriminator(held_out).mean()
    return gap.item(), history


def late_mean(values) -> float:
    late = values[len(values) // 2 :]
    return sum(late) / len(late)


@pytest.mark.mechanism
def test_ada_on_100_digits_raises_p_holds_rt_and_narrows_ds_overfitting_gap():
    steps = 3000  # batches of 8: 24,000 images, 240 passes over the 100 digits
    torch.set_num_threads(1)  # small batches: a second thread only waits on a busy CPU
    torch.manual_seed(0)
    # Without ADA: the same controller watches r_t, but every transformation is off.
    plain = AdaptiveAugment(target=0.6, interval=4, speed_kimg=4.0, **NO_OPS)
    plain_gap, plain_history = d_gap_after_training(plain, steps)
    torch.manual_seed(0)
    ada = AdaptiveAugment(target=0.6, interval=4, speed_kimg=4.0)  # p 0 -> 1 in 4,000 images
    ada_gap, history = d_gap_after_training(ada, steps)
    ps, rts = zip(*history, strict=True)
    plain_rt = late_mean([rt for _, rt in plain_history])
    print(
        f"without ADA: D gap {plain_gap:.3f}, r_t {plain_rt:.3f} (second half); with ADA: D gap "
        f"{ada_gap:.3f}, r_t {late_mean(rts):.3f}, p max {max(ps):.3f}, final {ps[-1]:.3f}"
    )
    assert ps[0] <= 0.01 and max(ps) >= 0.1  # p starts at 0 and rises
    assert abs(late_mean(rts) - 0.6) < 0.15  # r_t is held near its target
    assert ada_gap < plain_gap  # D tells its training digits from unseen ones less

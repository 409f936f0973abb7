"""End-to-end training through the real config tree, shrunk to a few CPU batches."""

import csv
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ganlab.train import train
from tests.conftest import SMALL_DCGAN, compose_config


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    (path,) = (run_dir / "csv").glob("version_*/metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def logged(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=dcgan", "data=digits", *SMALL_DCGAN],
        ["model=dcgan", "data=digits", "loss=hinge", *SMALL_DCGAN],
        ["model=dcgan", "data=digits", "loss=wasserstein", "data.resolution=64", *SMALL_DCGAN],
        ["model=dcgan", "data=digits", "loss=lsgan", "data.channels=3", *SMALL_DCGAN],
        ["model=gan_mlp", "data=digits", "data.resolution=16"],
        ["model=toy_mlp", "data=toy_ring"],
        ["model=toy_mlp", "data=toy_grid"],
    ],
    ids=["dcgan", "dcgan-hinge", "dcgan-w-64px", "dcgan-lsgan-rgb", "gan_mlp", "ring", "grid"],
)
def test_compositions_train_and_write_the_run_directory(make_config, tmp_path, overrides):
    cfg = make_config(*overrides)
    train(cfg)
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    rows = read_metrics(run_dir)
    d_losses = logged(rows, "train/d_loss")
    assert len(d_losses) == 3 and all(torch.isfinite(torch.tensor(d_losses)))
    for key in ("train/g_loss", "train/d_real", "train/d_fake"):
        assert logged(rows, key), f"{key} was not logged"
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    is_image = "toy_mlp" not in overrides[0]
    assert [p.name for p in grids] == ["epoch_0000.png"]  # a grid, or a scatter plot in 2D
    # The last epoch is evaluated: FID & co. for images, mode coverage for 2D points.
    scores = (
        ["val/fid", "val/is_mean", "val/kid_mean", "val/precision"]
        if is_image
        else ["val/modes", "val/hq_frac", "val/rev_kl"]
    )
    for key in scores:
        assert len(logged(rows, key)) == 1, f"{key} was not logged once"


def test_default_run_is_dcgan_on_digits_at_32px(make_config):
    cfg = make_config()
    assert cfg.model.generator._target_ == "ganlab.networks.DCGANGenerator"
    assert cfg.data._target_ == "ganlab.data.DigitsDataModule"
    assert (cfg.data.resolution, cfg.data.channels) == (32, 1)
    assert cfg.model.loss._target_ == "ganlab.losses.BCELoss"


@pytest.mark.parametrize(
    "overrides, shape",
    [
        (["model=gan_mlp", "data=mnist"], (1, 32, 32)),
        (["model=dcgan", "data=cifar10", "loss=hinge", "trainer=gpu"], (3, 32, 32)),
        (["model=dcgan", "data=celeba"], (3, 64, 64)),
        (["model=toy_mlp", "data=toy_grid"], (2,)),
    ],
)
def test_compositions_build_models_of_the_datas_shape(tmp_path, overrides, shape):
    cfg = compose_config(overrides, tmp_path)  # as composed, without the CPU debug settings
    model = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)  # builds without touching the (absent) files
    assert tuple(datamodule.sample_shape) == shape
    assert tuple(model.sample(2, seed=0).shape[1:]) == shape
    if "trainer=gpu" in overrides:
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
        assert type(model.loss).__name__ == "HingeLoss"


def test_ttur_is_a_config_change(make_config):
    cfg = make_config(
        "model.g_optimizer.lr=1e-4",
        "model.d_optimizer.lr=4e-4",
        "model.d_optimizer.betas=[0.0,0.9]",
    )
    g_opt, d_opt = instantiate(cfg.model).configure_optimizers()[0]
    assert g_opt.param_groups[0]["lr"] == 1e-4
    assert d_opt.param_groups[0]["lr"] == 4e-4 and d_opt.param_groups[0]["betas"] == (0.0, 0.9)


@pytest.mark.parametrize("players", [["g"], ["g", "d"]])
def test_schedulers_step_once_per_epoch(make_config, players):
    schedulers = []
    for player in players:
        key = f"+model.{player}_scheduler"
        schedulers += [
            f"{key}._target_=torch.optim.lr_scheduler.StepLR",
            f"{key}._partial_=true",
            f"{key}.step_size=1",
            f"{key}.gamma=0.5",
        ]
    cfg = make_config(*SMALL_DCGAN, *schedulers, "trainer.max_epochs=2")
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    g_opt, d_opt = trainer.optimizers
    assert g_opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.25)
    expected_d = 2e-4 * 0.25 if "d" in players else 2e-4
    assert d_opt.param_groups[0]["lr"] == pytest.approx(expected_d)


def test_n_critic_counts_steps_per_player(make_config):
    cfg = make_config(*SMALL_DCGAN, "model.n_critic=3", "trainer.limit_train_batches=7")
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    assert (model.d_steps, model.g_steps) == (7, 2)
    assert model.images_seen == 7 * 16


def test_each_player_trains_with_the_other_frozen(make_config):
    cfg = make_config(
        "model.discriminator._target_=tests.support.RecordingDiscriminator",
        "~model.discriminator.base_width",
        "~model.discriminator.batch_norm",
        *SMALL_DCGAN[:1],
    )
    model = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    # Per batch: D(real), D(fake) in the D step with D trainable, then D(fake) in the G step
    # with D frozen, so no gradient is computed for D's weights there.
    assert model.discriminator.weights_trainable == [True, True, False] * 3
    assert all(p.requires_grad for p in model.discriminator.parameters())  # restored after


def test_ema_generator_is_a_frozen_moving_average(make_config):
    cfg = make_config(*SMALL_DCGAN, "model.ema_decay=0.9")
    model = instantiate(cfg.model)
    before = [p.clone() for p in model.generator_ema.parameters()]
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    ema = list(model.generator_ema.parameters())
    live = list(model.generator.parameters())
    assert not any(p.requires_grad for p in ema)
    assert any(not torch.equal(a, b) for a, b in zip(ema, before, strict=True)), "EMA never moved"
    assert any(not torch.equal(a, b) for a, b in zip(ema, live, strict=True)), (
        "EMA is a copy, not an average"
    )
    optimized = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in ema}
    assert any(k.startswith("generator_ema.") for k in model.state_dict())
    # sample() uses the EMA generator; null turns it off.
    assert not torch.equal(model.sample(4, seed=1), model.sample(4, seed=1, use_ema=False))
    assert (
        instantiate(make_config(*SMALL_DCGAN, "model.ema_decay=null").model).generator_ema is None
    )


def test_samples_depend_only_on_seed_and_index(make_config):
    model = instantiate(make_config(*SMALL_DCGAN).model)
    whole = model.sample(10, seed=7, batch_size=10)
    chunked = model.sample(10, seed=7, batch_size=3)
    tail = model.sample(4, seed=7, start=6)
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert torch.allclose(whole[6:], tail, atol=1e-6)
    assert not torch.equal(whole, model.sample(10, seed=8))


def test_bf16_mixed_precision_trains_on_cpu(make_config, tmp_path):
    cfg = make_config(*SMALL_DCGAN, "trainer.precision=bf16-mixed")
    train(cfg)
    d_losses = logged(read_metrics(tmp_path / "run"), "train/d_loss")
    assert len(d_losses) == 3 and all(map(torch.isfinite, torch.tensor(d_losses)))


def test_own_classes_plug_in_by_target(make_config, tmp_path):
    """Extending ganlab: point `_target_` at your own module, network or loss class."""
    cfg = make_config(
        "model._target_=tests.support.LabelSmoothingGAN",
        "+model.smoothing=0.2",
        "model.generator._target_=tests.support.TinyGenerator",
        "~model.generator.base_width",
        *SMALL_DCGAN[1:],
    )
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert "generator.linear.weight" in ckpt["state_dict"]
    assert ckpt["ganlab"]["config"]["model"]["_target_"] == "tests.support.LabelSmoothingGAN"

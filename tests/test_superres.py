"""SRGAN / ESRGAN: the configs build BasicSR's recipe, the perceptual loss (a random-init feature
network here: no downloads), stage-1 initialisation of the generator alone, the relativistic GAN
stage, and the frozen feature network kept out of checkpoints and optimizers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from ganlab.checkpoint_io import load_safely
from ganlab.errors import CheckpointError, ConfigError
from ganlab.losses import BCELoss, PerceptualLoss, RaGANLoss
from ganlab.models import SRGAN
from ganlab.networks import MSRResNet, PatchGANDiscriminator, RRDBNet
from tests.conftest import compose_config, run_command

# nf 8, 2 blocks, 8x8 -> 32x32
SMALL = [
    "model.generator.base_width=8",
    "model.generator.num_blocks=2",
    "model.generator.channels=3",
    "model.discriminator.base_width=8",
    "model.discriminator.channels=3",
]
STAGE_ONE = ["model.gan_weight=0", "model.perceptual_weight=0", "model.l1_weight=1"]


def random_features() -> PerceptualLoss:
    torch.manual_seed(1)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    return PerceptualLoss(feature_network=network, feature_name="random-init, for tests")


def build(tmp_path: Path, *overrides: str, model: str = "srgan", perceptual=None) -> SRGAN:
    """The model `model=<model>` builds, small, carrying its run config as ganlab-train sets it."""
    extra = ["model.generator.growth=8"] if model == "esrgan" else []
    cfg = compose_config([f"model={model}", *SMALL, *extra, *overrides], tmp_path / "run")
    OmegaConf.resolve(cfg)
    torch.manual_seed(0)
    built = instantiate(cfg.model, perceptual=perceptual) if perceptual else instantiate(cfg.model)
    built.run_config = OmegaConf.to_container(cfg, resolve=True)
    return built


def pairs(count: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "source": torch.rand(3, 8, 8, generator=generator) * 2 - 1,
            "target": torch.rand(3, 32, 32, generator=generator) * 2 - 1,
        }
        for _ in range(count)
    ]


def fit(model: SRGAN, root: Path, batches: int = 1, ckpt_path: Path | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1 if ckpt_path is None else 2,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    loader = torch.utils.data.DataLoader(pairs(), batch_size=4)
    trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    return trainer


def weights(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def count_d_calls(model: SRGAN) -> list[int]:
    calls = [0]
    model.discriminator.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture(scope="module")
def stage_one_ckpt(tmp_path_factory) -> Path:
    """A stage-1 (L1 only) SRGAN checkpoint written by Lightning after one batch."""
    root = tmp_path_factory.mktemp("stage1")
    model = build(root, *STAGE_ONE)
    trainer = fit(model, root)
    path = root / "stage1.ckpt"
    trainer.save_checkpoint(path)
    return path


# ---------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, generator, loss", [("srgan", MSRResNet, BCELoss), ("esrgan", RRDBNet, RaGANLoss)]
)
def test_the_configs_build_basicsrs_gan_stage(tmp_path, name, generator, loss):
    model = build(tmp_path, model=name, perceptual=random_features())
    assert type(model.generator) is generator and type(model.loss) is loss
    assert isinstance(model.discriminator, PatchGANDiscriminator) and not model.conditional_d
    assert (model.l1_weight, model.perceptual_weight, model.gan_weight) == (1e-2, 1.0, 5e-3)
    assert model.run_config["model"]["perceptual"]["layer"] == 34
    assert model.generator_ema is None and model.init_from is None
    assert model.scheduler_interval == "step"
    (g_opt, d_opt), schedulers = model.configure_optimizers()
    for opt in (g_opt, d_opt):
        assert opt.defaults["lr"] == 1e-4 and tuple(opt.defaults["betas"]) == (0.9, 0.99)
    for scheduler in schedulers:
        assert sorted(scheduler.milestones) == [50_000, 100_000, 200_000, 300_000]
        assert scheduler.gamma == 0.5
    optimized = {
        id(p) for opt in (g_opt, d_opt) for group in opt.param_groups for p in group["params"]
    }
    assert not optimized & {id(p) for p in model.perceptual.parameters()}
    source = torch.rand(2, 3, 8, 8) * 2 - 1
    assert model.translate(source).shape == (2, 3, 32, 32)


def test_a_loss_chosen_on_the_command_line_wins(tmp_path):
    model = build(tmp_path, "loss=bce", model="esrgan", perceptual=random_features())
    assert type(model.loss) is BCELoss


# ---------------------------------------------------------------------- perceptual loss
def test_perceptual_loss_is_l1_of_imagenet_normalised_features(caplog):
    with caplog.at_level(logging.INFO, logger="ganlab"):
        loss = random_features()
    assert "random-init, for tests" in caplog.text  # an injected network is labelled in the log
    fake = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_()
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    by_hand = F.l1_loss(
        loss.network(((fake + 1) / 2 - mean) / std), loss.network(((real + 1) / 2 - mean) / std)
    )
    value = loss(fake, real)
    torch.testing.assert_close(value, by_hand)
    assert loss(real, real) == 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.network.parameters())


def test_missing_vgg19_weights_say_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    where = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(ConfigError) as err:
        PerceptualLoss()
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(where) in message
    assert "model.perceptual.weights_path=FILE" in message
    assert "model.perceptual_weight=0" in message
    with pytest.raises(ConfigError, match=r"weights_path='/nowhere/vgg.pth' does not exist"):
        PerceptualLoss(weights_path="/nowhere/vgg.pth")


def test_a_file_that_is_not_vgg19_or_a_layer_out_of_range_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(ConfigError, match=r"not torchvision's VGG19 state dict .*features.0"):
        PerceptualLoss(weights_path=str(path))
    with pytest.raises(ConfigError, match=r"layer=37 is not a layer .* accepted: 0 to 36"):
        PerceptualLoss(weights_path=str(path), layer=37)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"weights_path='.*empty.pth' is not a readable .*empty"):
        PerceptualLoss(weights_path=str(tmp_path / "empty.pth"))


def test_vgg19_weights_are_read_from_the_file_up_to_conv5_4(tmp_path):
    torch.manual_seed(3)
    vgg = make_layers(cfgs["E"])
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, path)
    loss = PerceptualLoss(weights_path=str(path))
    assert len(loss.network) == 35 and isinstance(loss.network[34], nn.Conv2d)  # no ReLU after
    assert torch.equal(loss.network[34].weight, vgg[34].weight)
    assert str(path) in loss.description


def test_the_training_run_reports_missing_vgg19_weights_in_one_line(tmp_path):
    result = run_command(
        "ganlab-train",
        "model=srgan",
        "trainer=cpu",
        "logger=none",
        "debug=fast",
        cwd=tmp_path,
        env={"TORCH_HOME": str(tmp_path / "torch")},
    )
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "error:" in x]
    assert line.startswith("ganlab-train: error: ")
    assert "vgg19-dcbb9e9d.pth" in line and "model.perceptual_weight=0" in line


# ---------------------------------------------------------------------- frozen feature network
def test_the_feature_network_is_not_in_checkpoints_and_follows_the_module(tmp_path):
    model = build(tmp_path, model="esrgan", perceptual=random_features())
    built = weights(model.perceptual.network)
    assert not [k for k in model.state_dict() if k.startswith("perceptual.")]
    trainer = fit(model, tmp_path)
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    saved = load_safely(path)["state_dict"]
    assert "generator.conv_first.weight" in saved
    assert not [k for k in saved if k.startswith("perceptual.")]
    assert same(weights(model.perceptual.network), built)  # never optimised
    # A run's state loads strictly into a model whose feature network is built from its file.
    other = build(tmp_path, model="esrgan", perceptual=random_features())
    other.load_state_dict(saved)
    assert same(weights(other.generator), weights(model.generator))
    other.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in other.perceptual.network.parameters())
    other.train()  # as Lightning does when training starts: the frozen network runs in eval
    other.perceptual(torch.zeros(1, 3, 32, 32, dtype=torch.float64), torch.zeros(1, 3, 32, 32))
    assert other.training and not other.perceptual.network.training


def test_a_checkpoint_is_sampled_without_vgg19_weights(tmp_path, monkeypatch, stage_one_ckpt):
    from ganlab.checkpoint import load_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no VGG19 file anywhere
    stage_two = build(tmp_path, f"model.init_from={stage_one_ckpt}", perceptual=random_features())
    trainer = fit(stage_two, tmp_path)
    path = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(path)
    model, _ = load_model(path)  # the config's perceptual loss (VGG19) is never built
    assert model.perceptual is None
    assert model.translate(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)


# ---------------------------------------------------------------------- the two stages
def test_stage_one_trains_g_by_l1_and_never_touches_d(tmp_path):
    model = build(tmp_path, *STAGE_ONE)
    assert model.perceptual is None and model._perceptual_factory is None
    generator, discriminator = weights(model.generator), weights(model.discriminator)
    calls = count_d_calls(model)
    fit(model, tmp_path, batches=2)
    assert calls[0] == 0
    assert same(weights(model.discriminator), discriminator)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert not same(weights(model.generator), generator)
    assert (model.g_steps, model.d_steps) == (2, 2)


def test_stage_two_updates_g_and_d_with_the_relativistic_loss(tmp_path):
    model = build(tmp_path, model="esrgan", perceptual=random_features())
    generator, discriminator = weights(model.generator), weights(model.discriminator)
    calls = count_d_calls(model)
    fit(model, tmp_path)
    # D step: reals and fakes; G step: fakes and, for the relativistic loss, the reals again
    assert calls[0] == 4
    assert not same(weights(model.generator), generator)
    assert not same(weights(model.discriminator), discriminator)


def test_the_generator_loss_is_the_recipes_weighted_sum(tmp_path):
    model = build(tmp_path, model="esrgan", perceptual=random_features())
    batch = {key: torch.stack([item[key] for item in pairs(4)]) for key in ("source", "target")}
    cond = model.condition(batch)
    fake = model.generate(None, cond)
    total, stats = model.g_loss(fake, cond, real=batch["target"])
    expected = (
        1e-2 * stats["train/g_l1"] + stats["train/g_perceptual"] + 5e-3 * stats["train/g_gan"]
    )
    torch.testing.assert_close(total, expected)
    assert stats["train/g_perceptual"] > 0


@pytest.mark.parametrize("interval, halved", [("step", True), ("epoch", False)])
def test_schedules_step_per_batch_when_asked(tmp_path, interval, halved):
    model = build(
        tmp_path,
        f"model.scheduler_interval={interval}",
        "model.g_scheduler.milestones=[2]",
        perceptual=random_features(),
    )
    fit(model, tmp_path, batches=2)  # one epoch of two batches
    g_opt, d_opt = model.optimizers()
    for opt in (g_opt, d_opt):
        assert opt.param_groups[0]["lr"] == (5e-5 if halved else 1e-4)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.scheduler_interval=iteration",
            "model.scheduler_interval='iteration' is not supported; accepted: ('epoch', 'step')",
        ),
        ("model.perceptual_weight=-1", "model.perceptual_weight=-1 must be >= 0"),
        (
            "model.perceptual=null",
            "model.perceptual_weight=1.0 needs model.perceptual (a ganlab.losses.PerceptualLoss); "
            "set model.perceptual_weight=0 to train without the perceptual loss",
        ),
    ],
)
def test_bad_settings_are_refused(tmp_path, override, message):
    with pytest.raises(InstantiationException) as err:
        build(tmp_path, override)
    assert isinstance(err.value.__cause__, ConfigError)
    assert str(err.value.__cause__) == message


# ---------------------------------------------------------------------- init_from
def test_init_from_loads_the_generator_only(tmp_path, stage_one_ckpt):
    stage_one = load_safely(stage_one_ckpt)["state_dict"]
    expected = {
        k.removeprefix("generator."): v for k, v in stage_one.items() if k.startswith("generator.")
    }
    model = build(
        tmp_path,
        f"model.init_from={stage_one_ckpt}",
        "model.g_optimizer.lr=0",  # G keeps what it was given
        perceptual=random_features(),
    )
    discriminator = weights(model.discriminator)
    model.load_generator(stage_one_ckpt)
    assert same(weights(model.generator), expected)
    assert same(weights(model.discriminator), discriminator)
    assert (model.g_steps, model.d_steps, model.images_seen) == (0, 0, 0)

    model = build(
        tmp_path,
        f"model.init_from={stage_one_ckpt}",
        "model.g_optimizer.lr=0",
        perceptual=random_features(),
    )
    fit(model, tmp_path)  # ganlab-train's path: loaded when training starts
    assert same(weights(model.generator), expected)
    assert not same(weights(model.discriminator), discriminator)  # D trains from its own init


def test_init_from_takes_the_ema_copy_when_stage_one_has_one(tmp_path):
    root = tmp_path / "ema"
    stage_one = build(root, *STAGE_ONE, "model.ema_decay=0.5")
    trainer = fit(stage_one, root, batches=2)
    path = root / "stage1.ckpt"
    trainer.save_checkpoint(path)
    assert not same(weights(stage_one.generator_ema), weights(stage_one.generator))
    model = build(tmp_path, perceptual=random_features())
    model.load_generator(path)
    assert same(weights(model.generator), weights(stage_one.generator_ema))


def test_a_gan_stage_without_init_from_warns_that_it_starts_from_random_weights(
    tmp_path, caplog, stage_one_ckpt
):
    runs = {
        "gan stage, no init_from": build(tmp_path, perceptual=random_features()),
        "stage 1": build(tmp_path, *STAGE_ONE),
        "gan stage from stage 1": build(
            tmp_path, f"model.init_from={stage_one_ckpt}", perceptual=random_features()
        ),
    }
    warned = {}
    for name, model in runs.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ganlab"):
            fit(model, tmp_path / name.replace(" ", "_"))
        messages = [record.getMessage() for record in caplog.records]
        warned[name] = [m for m in messages if "random weights" in m]
    (message,) = warned["gan stage, no init_from"]
    assert message.startswith("model.init_from is null: this GAN stage (model.gan_weight=0.005)")
    assert "model.gan_weight=0 model.perceptual_weight=0 model.l1_weight=1" in message
    assert warned["stage 1"] == [] and warned["gan stage from stage 1"] == []


def test_a_resumed_run_keeps_its_generator_and_needs_no_stage_one_file(tmp_path, stage_one_ckpt):
    copy = tmp_path / "stage1.ckpt"
    copy.write_bytes(stage_one_ckpt.read_bytes())
    model = build(tmp_path, f"model.init_from={copy}", perceptual=random_features())
    trainer = fit(model, tmp_path)
    resume = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(resume)
    copy.unlink()
    resumed = build(tmp_path, f"model.init_from={copy}", perceptual=random_features())
    fit(resumed, tmp_path, ckpt_path=resume)
    assert resumed.d_steps == 2  # continued from the checkpoint's step


def test_init_from_refuses_a_missing_or_foreign_file(tmp_path):
    model = build(tmp_path, perceptual=random_features())
    with pytest.raises(CheckpointError, match=r"model.init_from='/nowhere.ckpt' does not exist"):
        model.load_generator("/nowhere.ckpt")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match=r"^model.init_from='.*other.ckpt' is not a ganlab"):
        model.load_generator(other)


def test_init_from_refuses_another_generator(tmp_path):
    esrgan = build(tmp_path, model="esrgan", perceptual=random_features())
    path = tmp_path / "esrgan.ckpt"
    torch.save({"state_dict": esrgan.state_dict(), "ganlab": {"config": esrgan.run_config}}, path)
    model = build(tmp_path, perceptual=random_features())
    with pytest.raises(
        CheckpointError,
        match=r"generator is ganlab.networks.RRDBNet, but this model's .* MSRResNet",
    ):
        model.load_generator(path)


def test_init_from_names_the_keys_whose_shapes_differ(tmp_path, stage_one_ckpt):
    model = build(tmp_path, "model.generator.base_width=16", perceptual=random_features())
    with pytest.raises(CheckpointError) as err:
        model.load_generator(stage_one_ckpt)
    message = str(err.value)
    assert "conv_first.weight (8, 3, 3, 3) instead of (16, 3, 3, 3)" in message
    assert "must be those of the stage-1 run" in message

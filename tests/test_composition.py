"""Every model config composes with every loss, regularizers and augment option, and what is
built is what was chosen: the loss class, the regularizers, the augmentation on every input of
the discriminator (AC-GAN's and the unrolled critic's too), and the W&B labels."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf, open_dict
from torch import nn

from ganlab.cli import CONFIG_DIR
from ganlab.errors import ConfigError
from ganlab.losses import R1, AdaptiveAugment, DiffAugment, GradientPenalty
from ganlab.models import CycleGAN, GANModule
from ganlab.models.base import call_g_loss
from ganlab.train import train
from tests.conftest import SMALL_DCGAN, compose_config

CONF = Path(CONFIG_DIR)
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# AC-GAN is a setting of model=cgan with a discriminator path of its own.
ACGAN = ["model.aux_weight=1", "model.discriminator._target_=ganlab.networks.ACGANDiscriminator"]
VARIANTS = {**{name: [f"model={name}"] for name in MODELS}, "acgan": ["model=cgan", *ACGAN]}
LOSSES = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))
REGULARIZERS = {
    "none": [],
    "gp": [GradientPenalty],
    "r1": [R1],
    "[gp,r1]": [GradientPenalty, R1],
}
AUGMENT_CLASSES = {"none": type(None), "diffaugment": DiffAugment, "ada": AdaptiveAugment}
AUGMENTS = list(AUGMENT_CLASSES)


def augments_for(variant: str) -> list[str]:
    """The augment options a model takes: ADA transforms images only, so models of 2D points
    are crossed with DiffAugment's refusal of them (one is enough)."""
    model = VARIANTS[variant][0].removeprefix("model=")
    data_key = OmegaConf.load(CONF / "model" / f"{model}.yaml").get("data_key")
    return [a for a in AUGMENTS if a != "ada"] if data_key == "point" else AUGMENTS


@pytest.fixture(autouse=True)
def one_thread():
    """Batches of 4 small images: a second thread only adds synchronisation on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def covering_cases() -> list[tuple[str, str, str, str]]:
    """Each model with every loss, and with every regularizers and augment option along the
    way: the full product is models x losses x 4 x 3 compositions, this is models x losses."""
    cases = []
    for i, variant in enumerate(VARIANTS):
        augments = augments_for(variant)
        for j, loss in enumerate(LOSSES):
            k = i + j
            regularizers = list(REGULARIZERS)[k % len(REGULARIZERS)]
            cases.append((variant, loss, regularizers, augments[(k + k // 4) % len(augments)]))
    return cases


CASES = covering_cases()


def test_the_cases_cover_every_model_with_every_option():
    for variant in VARIANTS:
        mine = [case for case in CASES if case[0] == variant]
        assert {case[1] for case in mine} == set(LOSSES)
        assert {case[2] for case in mine} == set(REGULARIZERS)
        assert {case[3] for case in mine} == set(augments_for(variant))
    assert sum(case[3] == "ada" for case in CASES) >= len(VARIANTS) - 1  # all but 2D points
    assert {"rsgan", "ragan", "ralsgan", "bce", "wasserstein"} <= set(LOSSES)


# Image-to-image models compose with the data layout they are made for (not instantiated here).
TRANSLATION_DATA = {
    "pix2pix": "aligned",
    "denoise": "denoise_folder",
    "watermark": "clwd",
    "inpainting": "inpainting_folder",
    "srgan": "div2k",
    "esrgan": "div2k",
    "cyclegan": "unaligned",
}


def networks_of(player_config) -> list:
    """A player's network configs: the player itself, or each network of a group."""
    if "_target_" in player_config:
        return [player_config]
    return [network for network in player_config.values() if "_target_" in network]


def compose(tmp_path: Path, *overrides: str):
    """The config, with data the model fits (2D points, labelled digits or image pairs) and
    small networks."""
    cfg = compose_config([*overrides, "data=digits", "logger=wandb"], tmp_path)
    if cfg.model.data_key == "point":
        cfg = compose_config([*overrides, "data=toy_ring", "logger=wandb"], tmp_path)
    model_name = cfg.hydra.runtime.choices.get("model") if "hydra" in cfg else None
    model_name = model_name or next((o.split("=")[1] for o in overrides if "model=" in o), None)
    if model_name in TRANSLATION_DATA:
        data = f"data={TRANSLATION_DATA[model_name]}"
        cfg = compose_config([*overrides, data, "logger=wandb"], tmp_path)
    with open_dict(cfg):
        for network in networks_of(cfg.model.generator) + networks_of(cfg.model.discriminator):
            if "base_width" in network:
                network.base_width = 8
            if "hidden" in network:
                network.hidden = [16, 16]
            if "num_downs" in network:
                network.num_downs = 5  # U-Nets take the 32x32 images of `batch_for`
            if "num_blocks" in network:
                network.num_blocks = 1
            if "channel_max" in network:  # StyleGAN2: 512 channels at every resolution
                network.channel_max = 16
            if network._target_.startswith("ganlab.networks.BigGAN"):  # 384 and 192 channels
                network.width = 16
        if "perceptual_weight" in cfg.model:
            cfg.model.perceptual_weight = 0  # its VGG19 weights cannot be downloaded here
        if "unrolled_steps" in cfg.model:
            cfg.model.unrolled_steps = 1
            cfg.model.unroll_lr = 0.01  # no trainer here to read D's learning rate from
    return cfg


def batch_for(model: GANModule, cfg, size: int = 4) -> dict[str, torch.Tensor]:
    if model.data_key == "point":
        return {"point": torch.randn(size, cfg.data.dim)}
    if model.input_kind == "image":  # image pairs (SR: 8x8 -> 32x32), masks, or two domains
        target = torch.rand(size, 3, 32, 32) * 2 - 1
        if isinstance(model, CycleGAN):
            return {"a": target, "b": target.flip(0)}
        scale = getattr(model.generator, "scale", 1)
        source = nn.functional.interpolate(target, scale_factor=1 / scale) if scale > 1 else target
        mask = torch.zeros(size, 1, 32, 32)
        mask[..., 8:16, 8:16] = 1
        return {"source": source, "target": target, "mask": mask}
    shape = (size, cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
    return {"image": torch.rand(shape) * 2 - 1, "label": torch.arange(size) % 10}


class InputLog:
    """What the augmentation was given (channels) and returned, and what the discriminator was
    given, by forward hooks."""

    def __init__(self, model: GANModule):
        self.augmented: list[torch.Tensor] = []
        self.augment_channels: set[int] = set()
        self.d_inputs: list[torch.Tensor] = []
        model.discriminator.register_forward_pre_hook(lambda _, args: self.d_inputs.append(args[0]))
        if model.augment is not None:
            model.augment.register_forward_hook(lambda *hook: self.augmented.append(hook[2]))
            model.augment.register_forward_pre_hook(
                lambda _, args: self.augment_channels.add(args[0].shape[1])
            )

    def unaugmented_inputs(self) -> int:
        return sum(not any(x is out for out in self.augmented) for x in self.d_inputs)


@pytest.mark.parametrize("variant, loss, regularizers, augment", CASES)
def test_what_is_built_is_what_was_chosen(tmp_path, variant, loss, regularizers, augment):
    # ADA from p = 0.5, so that its transformations run; AC-GAN computes its own D loss, which
    # does not report the real logits that tune p: a fixed p, as documented for any model.
    ada = ["augment.initial_p=0.5", *(["augment.target=null"] if variant == "acgan" else [])]
    cfg = compose(
        tmp_path,
        *VARIANTS[variant],
        f"loss={loss}",
        f"regularizers={regularizers}",
        f"augment={augment}",
        *(ada if augment == "ada" else []),
    )
    model = instantiate(cfg.model)
    loss_class = get_class(OmegaConf.load(CONF / "loss" / f"{loss}.yaml")._target_)
    assert type(model.loss) is loss_class
    assert [type(r) for r in model.d_regularizers] == REGULARIZERS[regularizers]
    assert type(model.augment) is AUGMENT_CLASSES[augment]
    wandb = cfg.logger.wandb  # runs are labelled with the loss that was built
    assert wandb.group.endswith(f"-{model.loss.name}") and model.loss.name in wandb.tags

    if isinstance(model, CycleGAN):
        return  # two players of two networks each: tests/test_cyclegan.py trains these options
    torch.manual_seed(0)
    batch = batch_for(model, cfg)
    real, cond = batch[model.data_key], model.condition(batch)
    fake = model.generate(model.noise(len(real)), cond)
    log = InputLog(model)
    if augment != "none" and model.data_key == "point":
        with pytest.raises(ConfigError, match=r"augment=diffaugment .* shape \(4, 2\)"):
            model.d_loss(real, fake.detach(), cond)
        return
    try:
        d_loss, stats = model.d_loss(real, fake.detach(), cond)
    except ConfigError as error:  # only ADA's colour refusal of a D that sees stacked images
        assert augment == "ada" and log.augment_channels - {1, 3}, error
        assert "colour transformations take RGB (3 channels) or grayscale (1)" in str(error)
        return
    if augment == "ada" and variant != "acgan":  # the real logits tune ADA's p
        assert "train/ada_p" in stats
    penalties = [
        regularizer(model, real, fake.detach(), cond) for regularizer in model.d_regularizers
    ]
    g_loss, _ = call_g_loss(model, fake, cond, real)
    assert all(torch.isfinite(value) for value in [d_loss, g_loss, *penalties])
    g_loss.backward()
    # a growing generator (ProGAN) uses the parameters of its current levels only
    used = getattr(model.generator, "active_parameters", model.generator.parameters)()
    assert all(p.grad is not None for p in used if p.requires_grad)
    assert log.d_inputs, "the discriminator never ran"
    if augment != "none":
        assert log.unaugmented_inputs() == 0, f"{log.unaugmented_inputs()} D inputs not augmented"


@pytest.mark.parametrize("loss", ["bce", "ragan"])
@pytest.mark.parametrize("variant", ["dcgan", "acgan"])
def test_the_generator_loss_sees_the_reals_exactly_when_the_loss_needs_them(
    tmp_path, variant, loss
):
    cfg = compose(tmp_path, *VARIANTS[variant], f"loss={loss}")
    model = instantiate(cfg.model)
    batch = batch_for(model, cfg)
    real, cond = batch["image"], model.condition(batch)
    fake = model.generate(model.noise(len(real)), cond)
    g_loss = call_g_loss(model, fake, cond, real)[0].item()
    other_reals = call_g_loss(model, fake, cond, real.flip(0) * 0.5)[0].item()
    assert (g_loss != other_reals) == model.loss.needs_real_logits


@pytest.mark.parametrize(
    "overrides, loss, regularizers",
    [
        (["model=wgan_gp"], "WassersteinLoss", [GradientPenalty]),
        (["model=wgan_gp", "loss=hinge", "regularizers=r1"], "HingeLoss", [R1]),
        (["loss=hinge", "model=wgan_gp"], "HingeLoss", [GradientPenalty]),
        (["model=wgan_gp", "regularizers=none"], "WassersteinLoss", []),
        (["model=wgan_gp", "regularizers=[gp,r1]"], "WassersteinLoss", [GradientPenalty, R1]),
        (["model=wgan"], "WassersteinLoss", []),
        (["model=sngan_projection"], "HingeLoss", []),
        (["model=sngan", "loss=bce"], "BCELoss", []),
        (["experiment=wgan_gp_digits", "loss=lsgan"], "LSGANLoss", [GradientPenalty]),
        (["experiment=sngan_cifar10"], "HingeLoss", []),
        (["experiment=wgan_gp_ring", "loss=ralsgan"], "RaLSGANLoss", [GradientPenalty]),
    ],
)
def test_a_models_default_options_give_way_to_the_users(tmp_path, overrides, loss, regularizers):
    """Model configs pick their loss and regularizers as defaults-list overrides, so Hydra
    reports what was really built, and a command line or an experiment still wins."""
    cfg = compose(tmp_path, *overrides)
    model = instantiate(cfg.model)
    assert type(model.loss).__name__ == loss
    assert [type(r) for r in model.d_regularizers] == regularizers
    assert cfg.logger.wandb.tags[-1] == model.loss.name


def test_settings_of_an_option_that_is_turned_off_fail_clearly(tmp_path):
    # experiment=wgan_gp_ring sets regularizers.gp.weight; regularizers=none leaves it unbuilt.
    cfg = compose(tmp_path, "experiment=wgan_gp_ring", "regularizers=none")
    with pytest.raises(InstantiationException) as caught:
        instantiate(cfg.model)
    assert isinstance(caught.value.__cause__, ConfigError)
    assert str(caught.value.__cause__) == (
        "regularizers.gp={'weight': 0.1} is not a regularizer (it has no _target_): it sets "
        "options of gp, which is not selected; select it (regularizers=gp, several as "
        "regularizers=[gp,r1]) or drop the setting"
    )
    cfg = compose(tmp_path, "model=dcgan", "model.augment={policy: color}")
    with pytest.raises(InstantiationException, match="augment=.*'policy': 'color'.* not an aug"):
        instantiate(cfg.model)


class OldStyleGAN(GANModule):
    """A user's variant written against the hook before it took `real`."""

    def g_loss(self, fake, cond=None):
        loss, stats = super().g_loss(fake, cond)
        return loss, {**stats, "train/g_old_style": loss.detach()}


def logged(run_dir: Path, key: str) -> list[float]:
    (path,) = (run_dir / "csv").glob("version_*/metrics.csv")
    return [float(row[key]) for row in csv.DictReader(path.open()) if row.get(key)]


def test_a_g_loss_override_without_real_still_trains(make_config, tmp_path):
    target = "model._target_=tests.test_composition.OldStyleGAN"
    train(make_config(*SMALL_DCGAN, target))
    assert len(logged(tmp_path / "run", "train/g_old_style")) == 3
    with pytest.raises(ConfigError, match="loss=ragan compares fakes with reals .* `real=None`"):
        train(make_config(*SMALL_DCGAN, target, "loss=ragan", output_dir=tmp_path / "ragan"))


@pytest.mark.parametrize(
    "overrides",
    [
        [*SMALL_DCGAN, "loss=ragan", "augment=diffaugment"],
        ["experiment=unrolled_ring", "loss=rsgan", "model.unrolled_steps=2"],
        ["model=cgan", *ACGAN, *SMALL_DCGAN, "loss=ralsgan", "regularizers=[gp,r1]"],
    ],
)
def test_relativistic_losses_train(make_config, tmp_path, overrides):
    train(make_config(*overrides))
    g_losses = logged(tmp_path / "run", "train/g_loss")
    assert len(g_losses) == 3 and all(torch.isfinite(torch.tensor(g_losses)))

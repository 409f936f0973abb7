"""Resuming from last.ckpt continues exactly: N epochs straight == N/2, resume, N/2."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ganlab.errors import CheckpointError, ConfigError
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    "model_overrides",
    [
        ["model=dcgan", *SMALL_DCGAN],  # BatchNorm statistics and the EMA generator
        ["model=gan_mlp", "data.resolution=8", "model.ema_decay=null"],  # dropout draws RNG
    ],
    ids=["dcgan", "gan_mlp"],
)
@pytest.mark.slow
def test_resume_equals_straight_through(make_config, tmp_path, model_overrides):
    common = [*model_overrides, "trainer.limit_train_batches=3"]
    train(make_config(*common, "trainer.max_epochs=4", output_dir=tmp_path / "straight"))
    train(make_config(*common, "trainer.max_epochs=2", output_dir=tmp_path / "resumed"))
    half = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert load(half)["ganlab"]["progress"]["d_steps"] == 2 * 3
    train(
        make_config(
            *common, "trainer.max_epochs=4", f"ckpt_path={half}", output_dir=tmp_path / "resumed"
        )
    )

    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["epoch"] == resumed["epoch"]
    assert straight["global_step"] == resumed["global_step"] == 4 * 3 * 2
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")
    assert (
        straight["ganlab"]["progress"]
        == resumed["ganlab"]["progress"]
        == {"images_seen": 4 * 3 * 16, "d_steps": 12, "g_steps": 12}
    )


def test_resume_from_a_missing_checkpoint_is_refused(make_config, tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    with pytest.raises(CheckpointError, match=f"ckpt_path='{missing}' does not exist"):
        train(make_config(f"ckpt_path={missing}"))


# Two epochs of two batches, with the generator's rate halved after every epoch.
SCHEDULED = [
    *FAST,
    *SMALL_DCGAN,
    "trainer.limit_train_batches=2",
    "+model.g_scheduler._target_=torch.optim.lr_scheduler.ExponentialLR",
    "+model.g_scheduler._partial_=true",
    "+model.g_scheduler.gamma=0.5",
]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_epochs")
    train(compose_config([*SCHEDULED, "trainer.max_epochs=2"], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_resume_applies_new_learning_rates_and_records_them(two_epochs, tmp_path, caplog):
    assert load(two_epochs)["optimizer_states"][0]["param_groups"][0]["lr"] == 2e-4 * 0.5**2
    overrides = ["trainer.max_epochs=3", "model.g_optimizer.lr=1e-4", "model.d_optimizer.lr=1e-3"]
    with caplog.at_level("INFO", logger="ganlab"):
        train(compose_config([*SCHEDULED, *overrides, f"ckpt_path={two_epochs}"], tmp_path))

    resumed = load(tmp_path / "checkpoints" / "last.ckpt")
    g_state, d_state = resumed["optimizer_states"]
    assert d_state["param_groups"][0]["lr"] == 1e-3
    # The schedule continues from the new base rate: 1e-4 halved after each of 3 epochs.
    assert g_state["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.5**3, rel=1e-12)
    assert resumed["lr_schedulers"][0]["base_lrs"] == [1e-4]
    assert resumed["ganlab"]["progress"]["d_steps"] == 3 * 2
    for config in (resumed["ganlab"]["config"], OmegaConf.load(tmp_path / "config.yaml")):
        assert config["model"]["g_optimizer"]["lr"] == 1e-4
        assert config["model"]["d_optimizer"]["lr"] == 1e-3
        assert config["trainer"]["max_epochs"] == 3
    changed = [r.getMessage() for r in caplog.records if "changed settings" in r.getMessage()]
    assert len(changed) == 1
    for change in (
        "model.g_optimizer.lr: 0.0002 -> 0.0001",
        "model.d_optimizer.lr: 0.0002 -> 0.001",
        "trainer.max_epochs: 2 -> 3",
    ):
        assert change in changed[0]


@pytest.mark.parametrize(
    "overrides, listed",
    [
        ([*SCHEDULED, "model.generator.base_width=16"], ["model.generator.base_width: 8 -> 16"]),
        ([*SCHEDULED, "loss=hinge"], ["'ganlab.losses.BCELoss' -> 'ganlab.losses.HingeLoss'"]),
        ([*SCHEDULED, "data.batch_size=8", "seed=1"], ["data.batch_size: 16 -> 8", "seed: 0 -> 1"]),
        (
            [*FAST, "model=gan_mlp", "data.resolution=8"],  # another model: weights cannot load
            [
                "model.generator._target_: 'ganlab.networks.DCGANGenerator' -> "
                "'ganlab.networks.MLPGenerator'",
                "data.resolution: 32 -> 8",
            ],
        ),
    ],
    ids=["architecture", "loss", "data", "another_model"],
)
def test_resume_refuses_changes_it_cannot_apply_before_anything_runs(
    two_epochs, tmp_path, overrides, listed
):
    cfg = compose_config([*overrides, f"ckpt_path={two_epochs}"], tmp_path)
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    message = str(caught.value)
    assert message.startswith(
        f"ckpt_path='{two_epochs}' was trained with other settings than these, and a resumed "
        "run cannot change them: "
    )
    assert "\n" not in message
    for change in listed:
        assert change in message
    assert "start a new run (no ckpt_path) to change them" in message
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.yaml").exists()


# ---------------------------------------------------------------- image-to-image families
# Tiny networks on small synthetic photo sets: each run takes a second or two on a CPU.
PHOTO_SETS = ["data.num_train=16", "data.num_test=8", "data.batch_size=4"]
TRANSLATION_FAMILIES = {
    # pix2pix with the mask head; the 64x64 U-Net (6 downsamplings) has a dropout layer
    "watermark": [
        "experiment=watermark_photos",
        "model.generator.base_width=4",
        "model.discriminator.base_width=4",
        "model.discriminator.n_layers=2",
    ],
    # a pool of 3 is full within the first epoch: later D steps draw stored fakes from it
    "cyclegan": [
        "experiment=cyclegan_photos",
        "data.load_size=32",
        "data.crop_size=32",
        "model.generator.a_to_b.base_width=4",
        "model.generator.a_to_b.n_blocks=1",
        "model.discriminator.a.base_width=4",
        "model.discriminator.a.n_layers=2",
        "model.pool_size=3",
    ],
    # SRGAN's GAN stage; its schedulers step after every batch
    "sr4": [
        "experiment=sr4_photos",
        "data.gt_size=32",
        "model.generator.base_width=4",
        "model.generator.num_blocks=1",
        "model.discriminator.base_width=4",
        "model.discriminator.n_layers=2",
    ],
    "inpaint": [
        "experiment=inpaint_photos",
        "model.generator.base_width=4",
        "model.discriminator.base_width=4",
        "model.discriminator.n_layers=2",
    ],
}
SR_STAGE_ONE = ["model.gan_weight=0", "model.l1_weight=1"]  # L1 alone, D never trained


def photo_config(family: str, *overrides: str, output_dir, data_dir):
    """A tiny run of an image-to-image family, reading its photo set from `data_dir` (written
    by the first run that needs it)."""
    cfg = compose_config(
        [*FAST, *TRANSLATION_FAMILIES[family], *PHOTO_SETS, *overrides], output_dir
    )
    cfg.paths.data_dir = str(data_dir)
    return cfg


@pytest.fixture(scope="module")
def sr_stage_one(tmp_path_factory):
    """The checkpoint of a one-epoch L1-only SR run: what stage 2 starts from."""
    root = tmp_path_factory.mktemp("sr_stage_one")
    cfg = photo_config(
        "sr4",
        *SR_STAGE_ONE,
        "trainer.limit_train_batches=2",
        output_dir=root,
        data_dir=root / "data",
    )
    train(cfg)
    return root / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    "family, stage",
    [
        ("watermark", []),
        ("cyclegan", []),  # the image pools
        ("sr4", SR_STAGE_ONE),
        ("sr4", ["init_from"]),  # stage 2 started from stage 1's generator
        ("inpaint", []),
    ],
    ids=["watermark", "cyclegan", "sr4_stage1", "sr4_stage2", "inpaint"],
)
@pytest.mark.slow
def test_translation_resume_equals_straight_through(tmp_path, sr_stage_one, family, stage):
    if stage == ["init_from"]:
        stage = [f"model.init_from={sr_stage_one}"]
    common = [*stage, "trainer.limit_train_batches=2"]
    data_dir = tmp_path / "data"

    def run(*overrides, output_dir):
        train(photo_config(family, *common, *overrides, output_dir=output_dir, data_dir=data_dir))

    run("trainer.max_epochs=4", output_dir=tmp_path / "straight")
    run("trainer.max_epochs=2", output_dir=tmp_path / "resumed")
    half = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert load(half)["ganlab"]["progress"]["d_steps"] == 2 * 2
    run("trainer.max_epochs=4", f"ckpt_path={half}", output_dir=tmp_path / "resumed")

    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["epoch"] == resumed["epoch"]
    assert straight["global_step"] == resumed["global_step"] == 4 * 2 * 2
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")
    assert_same_tensors(straight["lr_schedulers"], resumed["lr_schedulers"], "lr_schedulers")
    assert (
        straight["ganlab"]["progress"]
        == resumed["ganlab"]["progress"]
        == {"images_seen": 4 * 2 * 4, "d_steps": 8, "g_steps": 8}
    )
    if family == "cyclegan":  # the pools were full and drawn from: their fakes were compared
        pools = [straight["state_dict"][f"pools.{d}._extra_state"] for d in "ab"]
        assert [pool["count"] for pool in pools] == [3, 3]


@pytest.mark.parametrize("family", ["watermark", "cyclegan"])
def test_translation_loaders_draw_nothing_from_the_global_random_stream(tmp_path, family):
    """Lightning makes a resumed run's first loader iterator before the checkpoint's random
    states are restored: a draw from the global stream there would be lost on resume."""
    cfg = photo_config(family, output_dir=tmp_path / "run", data_dir=tmp_path / "data")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    before = torch.random.get_rng_state()
    next(iter(datamodule.train_dataloader()))
    assert torch.equal(torch.random.get_rng_state(), before)

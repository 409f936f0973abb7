"""Every experiment file composes and trains a few CPU batches: a new file is tested the day
it is added. Dataset files that cannot be downloaded here are written in their own layout
(torchvision's, or the image-to-image sets' as released), small."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image
from torchvision.models.vgg import cfgs, make_layers

from ganlab.cli import CONFIG_DIR
from ganlab.train import train
from tests.datasets import (
    allow_test_files,
    write_aligned,
    write_cifar,
    write_clean,
    write_clwd,
    write_mnist,
    write_sr_pair,
    write_unaligned,
)

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def write_image_folder(root: Path, count: int) -> None:
    """A folder of photos as a user exports them (e.g. LSUN bedrooms), non-square RGB JPEGs."""
    root.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for i in range(count):
        pixels = generator.integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i:04d}.jpg")


def test_there_are_experiments():
    assert {"dcgan_digits", "dcgan_cifar10", "gan_mlp_mnist", "toy_ring"} <= set(EXPERIMENTS)


# Datasets that cannot be downloaded here, written small in torchvision's layout.
WRITERS = {
    "mnist": lambda root: write_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
    "cifar10": write_cifar,
}


def write_div2k(data) -> None:
    """BasicSR's DIV2K sub-image folders (LR named as its HR image) and each test dir in Set5's
    GTmod12/LRbicx<scale> layout, with two test images of different sizes as in Set5."""
    hr_dir, lr_dir, scale = Path(data.hr_dir), Path(data.lr_dir), data.scale
    for i in range(12):
        name = f"{i:04d}_s001.png"
        write_sr_pair(hr_dir / name, lr_dir / name, seed=i, size=data.gt_size, scale=scale)
    for t, test_dir in enumerate(map(Path, data.test_dirs)):
        for i, size in enumerate((6 * scale, 9 * scale)):
            gt, lr = test_dir / "GTmod12" / f"{i}.png", test_dir / f"LRbicx{scale}" / f"{i}.png"
            write_sr_pair(gt, lr, seed=100 + 10 * t + i, size=size, scale=scale)


# Image-to-image sets, by datamodule class; the *_photos sets are written by ganlab itself.
TRANSLATION_WRITERS = {
    "AlignedPairsDataModule": lambda data: [
        write_aligned(Path(data.root), splits=("train",), count=12),
        write_aligned(Path(data.root), splits=("test",), count=2),
    ],
    "UnalignedDataModule": lambda data: write_unaligned(
        Path(data.root), {"trainA": 12, "trainB": 12, "testA": 2, "testB": 2}
    ),
    "SuperResolutionDataModule": write_div2k,
    # the U-Nets of these recipes need the whole 256x256 image (crop_size null)
    "WatermarkPairsDataModule": lambda data: write_clwd(Path(data.root), size=256, count=12),
    "InpaintingFolderDataModule": lambda data: write_clean(
        Path(data.root), count=12, size=data.crop_size
    ),
}


@pytest.fixture(scope="session")
def random_vgg19_file(tmp_path_factory) -> Path:
    """A VGG19 `features` file in torchvision's key layout with random weights: the GAN stages'
    perceptual loss reads it as it reads vgg19-dcbb9e9d.pth (never downloaded)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    features = make_layers(cfgs["E"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


# Image-to-image recipes train at their crop size where their networks need it (U-Nets of 8
# downsamplings: 256x256); elsewhere the test shrinks the crops (the networks take any size).
# The published widths (over ten million parameters) are narrowed: the recipe's structure,
# data layout and losses are what these runs check.
NARROW_CYCLEGAN = ["model.generator.a_to_b.base_width=8", "model.discriminator.a.base_width=8"]
NARROW_UNET = ["model.generator.base_width=8", "model.discriminator.base_width=8"]
NARROW_RRDB = ["model.generator.base_width=16", "model.generator.num_blocks=2"]
SMALLER = {
    "cyclegan_horse2zebra": ["data.load_size=36", "data.crop_size=32", *NARROW_CYCLEGAN],
    "cyclegan_monet2photo": ["data.load_size=36", "data.crop_size=32", *NARROW_CYCLEGAN],
    "pix2pix_facades": NARROW_UNET,
    "stylegan2_cifar10": ["model.generator.channel_max=32", "model.discriminator.channel_max=32"],
    "stylegan2_ada_cifar10": [
        "model.generator.channel_max=32",
        "model.discriminator.channel_max=32",
    ],
    **dict.fromkeys(
        ["biggan_cifar10", "biggan_author_cifar10"],
        ["model.generator.width=16", "model.discriminator.width=16"],
    ),
    "watermark_clwd": NARROW_UNET,
    # their 2000 crops take a while to write
    **dict.fromkeys(["watermark_photos", "inpaint_photos"], ["data.num_train=16"]),
    "inpainting_places": ["data.crop_size=64"],
    **dict.fromkeys(["srresnet_div2k", "srgan_div2k"], ["data.gt_size=32"]),
    **dict.fromkeys(["esrgan_psnr_div2k", "esrgan_div2k"], ["data.gt_size=32", *NARROW_RRDB]),
}

# The few that take more than a couple of seconds (pytest --durations) run with the slow tests.
SLOW_EXPERIMENTS = {
    "sngan_cifar10",
    "sngan_projection_cifar10",
    "unrolled_digits",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPERIMENTS else n for n in EXPERIMENTS],
)
def test_experiment_trains_a_few_batches(make_config, tmp_path, monkeypatch, request, name):
    smaller = SMALLER.get(name, [])
    cfg = make_config(f"experiment={name}", "data.batch_size=4", "data.num_workers=0", *smaller)
    if cfg.data._target_.endswith("TorchvisionDataModule"):
        assert cfg.data.dataset in WRITERS, f"write {cfg.data.dataset} files for this test"
        WRITERS[cfg.data.dataset](Path(cfg.data.root))
        allow_test_files(monkeypatch, torchvision.datasets.cifar)
    if cfg.data._target_.endswith("ImageFolderDataModule"):
        write_image_folder(Path(cfg.data.path), count=12)
    translation_writer = TRANSLATION_WRITERS.get(cfg.data._target_.rpartition(".")[2])
    if translation_writer is not None:
        translation_writer(cfg.data)
    if cfg.model.get("perceptual_weight", 0) > 0:
        cfg.model.perceptual.weights_path = str(request.getfixturevalue("random_vgg19_file"))
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganlab"]["progress"]["d_steps"] == 3
    assert ckpt["ganlab"]["config"]["tags"] == list(cfg.tags)
    if "best_checkpoint" in cfg.callbacks:  # callbacks=best_fid / best_psnr: scored, then kept
        monitored = cfg.callbacks.best_checkpoint.monitor
        best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
        (state,) = [v for k, v in best["callbacks"].items() if f"'monitor': '{monitored}'" in k]
        assert torch.isfinite(torch.as_tensor(state["best_model_score"]))

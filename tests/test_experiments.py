"""Every experiment file composes and trains a few CPU batches: a new file is tested the day
it is added. Dataset files that cannot be downloaded here are written in torchvision's layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image

from ganlab.cli import CONFIG_DIR
from ganlab.train import train
from tests.datasets import allow_test_files, write_cifar, write_mnist

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


# The few that take more than a couple of seconds (pytest --durations) run with the slow tests.
SLOW_EXPERIMENTS = {"sngan_cifar10", "sngan_projection_cifar10", "unrolled_digits"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPERIMENTS else n for n in EXPERIMENTS],
)
def test_experiment_trains_a_few_batches(make_config, tmp_path, monkeypatch, name):
    cfg = make_config(f"experiment={name}", "data.batch_size=4", "data.num_workers=0")
    if cfg.data._target_.endswith("TorchvisionDataModule"):
        assert cfg.data.dataset in WRITERS, f"write {cfg.data.dataset} files for this test"
        WRITERS[cfg.data.dataset](Path(cfg.data.root))
        allow_test_files(monkeypatch, torchvision.datasets.cifar)
    if cfg.data._target_.endswith("ImageFolderDataModule"):
        write_image_folder(Path(cfg.data.path), count=12)
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganlab"]["progress"]["d_steps"] == 3
    assert ckpt["ganlab"]["config"]["tags"] == list(cfg.tags)

"""Conditional GANs: the networks, ConditionalGAN through the real config tree, labelled
sampling (model API, ganlab-sample) and the one-row-per-class sample grid."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image
from torch import nn

from ganlab.checkpoint import load_model
from ganlab.cli import user_errors
from ganlab.errors import ConfigError
from ganlab.losses import BCELoss
from ganlab.models import ConditionalGAN
from ganlab.networks import (
    ACGANDiscriminator,
    ConditionalDCGANGenerator,
    ConditionalMLPGenerator,
    ProjectionDCGANDiscriminator,
    ProjectionMLPDiscriminator,
)
from ganlab.sample import sample as ganlab_sample
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config

ACGAN = ["model.aux_weight=1", "model.discriminator._target_=ganlab.networks.ACGANDiscriminator"]


def logged(run_dir: Path, key: str) -> list[float]:
    (path,) = (run_dir / "csv").glob("version_*/metrics.csv")
    with open(path) as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


class LabelPainter(nn.Module):
    """A generator whose images are filled with their label: which label went where is exact."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return labels.float().view(-1, 1, 1, 1).expand(len(labels), 1, 4, 4) + 0 * z.sum()


def painter_gan() -> ConditionalGAN:
    adam = partial(torch.optim.Adam, lr=1e-3)
    return ConditionalGAN(
        generator=LabelPainter(),
        discriminator=ProjectionMLPDiscriminator(in_shape=(1, 4, 4), num_classes=10, hidden=(8,)),
        loss=BCELoss(),
        g_optimizer=adam,
        d_optimizer=adam,
        latent_dim=4,
        ema_decay=None,
        num_classes=10,
    )


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory) -> Path:
    """One small model=cgan run on digits, shared by the tests that read its outputs."""
    run_dir = tmp_path_factory.mktemp("cgan") / "run"
    train(compose_config([*FAST, "model=cgan", *SMALL_DCGAN], run_dir))
    return run_dir


# ---------------------------------------------------------------------- networks
@pytest.mark.parametrize("resolution", [32, 64])
def test_dcgan_conditional_network_shapes(resolution):
    g = ConditionalDCGANGenerator(
        16, channels=3, resolution=resolution, num_classes=5, base_width=8
    )
    x = g(torch.randn(4, 16), torch.tensor([0, 1, 2, 4]))
    assert x.shape == (4, 3, resolution, resolution)
    labels = torch.tensor([0, 1, 2, 4])
    projection = ProjectionDCGANDiscriminator(3, resolution, num_classes=5, base_width=8)
    assert projection(x, labels).shape == (4,)
    acgan = ACGANDiscriminator(3, resolution, num_classes=5, base_width=8)
    assert acgan(x, labels).shape == (4,)
    logits, classes = acgan(x, labels, return_class_logits=True)
    assert logits.shape == (4,) and classes.shape == (4, 5)


def test_mlp_conditional_network_shapes():
    g = ConditionalMLPGenerator(8, out_shape=(1, 8, 8), num_classes=3, hidden=(16,))
    x = g(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]))
    assert x.shape == (5, 1, 8, 8)
    d = ProjectionMLPDiscriminator(in_shape=(1, 8, 8), num_classes=3, hidden=(16, 8))
    assert d(x, torch.tensor([0, 1, 2, 0, 1])).shape == (5,)


@pytest.mark.parametrize(
    "d",
    [
        ProjectionDCGANDiscriminator(1, 32, num_classes=10, base_width=8),
        ProjectionMLPDiscriminator(in_shape=(1, 32, 32), num_classes=10, hidden=(16,), dropout=0),
    ],
    ids=["dcgan", "mlp"],
)
def test_projection_term_uses_the_label(d):
    d.eval()
    x = torch.randn(6, 1, 32, 32)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        assert torch.equal(d(x, labels), d(x, labels.clone()))
        changed = d(x, (labels + 1) % 10)
        # Only the projection differs: <embed(y) - embed(y'), h> for the same features h.
        h = d.trunk(x).flatten(1)
        expected = ((d.embed(labels) - d.embed((labels + 1) % 10)) * h).sum(1)
        assert not torch.allclose(d(x, labels), changed)
        assert torch.allclose(d(x, labels) - changed, expected, atol=1e-5)


def test_generator_uses_the_label():
    g = ConditionalDCGANGenerator(16, channels=1, resolution=32, num_classes=10, base_width=8)
    g.eval()
    z = torch.randn(1, 16).repeat(2, 1)
    a, b = g(z, torch.tensor([3, 7]))
    assert not torch.allclose(a, b)


def test_networks_reject_unlabelled_data():
    # The message names the model and data options when a Hydra run is live (other tests).
    with pytest.raises(ConfigError, match=r"needs labelled data; .* has no classes"):
        ConditionalDCGANGenerator(16, channels=1, resolution=32, num_classes=None)


# ---------------------------------------------------------------------- training
def test_cgan_trains_through_the_config_and_grids_one_row_per_class(cgan_run):
    assert (cgan_run / "checkpoints" / "last.ckpt").is_file()
    d_losses = logged(cgan_run, "train/d_loss")
    assert len(d_losses) == 3 and np.isfinite(d_losses).all()
    # 10 rows (classes) x 8 columns of 32px images, 2px padding: make_grid's layout.
    with Image.open(cgan_run / "samples" / "epoch_0000.png") as grid:
        assert grid.size == (8 * 34 + 2, 10 * 34 + 2)


def test_cgan_mlp_trains(make_config, tmp_path):
    train(make_config("model=cgan_mlp", "data.resolution=16", "model.generator.hidden=[32]"))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert len(logged(tmp_path / "run", "train/g_loss")) == 3


def test_acgan_switch_trains_and_logs_its_auxiliary_loss(make_config, tmp_path):
    cfg = make_config("model=cgan", *SMALL_DCGAN, *ACGAN)
    train(cfg)
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    for key in ("train/d_aux", "train/g_aux", "train/d_class_acc"):
        values = logged(run_dir, key)
        assert len(values) == 3 and np.isfinite(values).all(), key
    # Cross-entropy over 10 classes starts near 2 * ln(10) for D (real + fake).
    assert 0 < logged(run_dir, "train/d_aux")[0] < 3 * np.log(10)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.aux_weight=1"], "needs a discriminator with a class head"),
        (ACGAN[1:], "model.aux_weight=0"),
        (["model.aux_weight=-1"], "must be >= 0"),
    ],
    ids=["aux-without-head", "head-without-aux", "negative"],
)
def test_acgan_settings_must_agree(make_config, overrides, message):
    cfg = make_config("model=cgan", *SMALL_DCGAN, *overrides)
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.model)
    assert isinstance(info.value.__cause__, ConfigError)
    assert message in str(info.value.__cause__)


def test_unlabelled_data_fails_with_a_clear_error(tmp_path, capsys):
    cfg = compose_config(["model=cgan", "data=celeba"], tmp_path)
    with pytest.raises(SystemExit) as exit_info, user_errors("ganlab-train"):
        instantiate(cfg.model)
    assert exit_info.value.code == 2
    assert "model=cgan needs labelled data; data celeba has no classes" in capsys.readouterr().err


# ---------------------------------------------------------------------- sampling
def test_samples_follow_the_given_labels_exactly():
    model = painter_gan()
    labels = [3, 7, 1, 0, 9]
    images = model.sample(5, labels=labels, seed=0, batch_size=2)
    assert images[:, 0, 0, 0].tolist() == labels
    assert model.sample(3, labels=torch.tensor([2, 2, 5]))[:, 0, 0, 0].tolist() == [2, 2, 5]


def test_default_labels_are_index_based():
    model = painter_gan()
    assert model.sample_labels(12).tolist() == [*range(10), 0, 1]
    assert model.sample_labels(4, start=8).tolist() == [8, 9, 0, 1]
    whole = model.sample(12, seed=0, batch_size=12)[:, 0, 0, 0]
    assert whole.tolist() == model.sample(12, seed=0, batch_size=5)[:, 0, 0, 0].tolist()
    assert model.sample(4, seed=0, start=8)[:, 0, 0, 0].tolist() == [8, 9, 0, 1]


def test_same_seed_and_label_give_the_same_image(make_config):
    model = instantiate(make_config("model=cgan", *SMALL_DCGAN).model)
    same = model.sample(2, labels=[3, 3], seed=5, start=0)
    assert torch.equal(same, model.sample(2, labels=[3, 3], seed=5))
    # Sample 1 of each call shares its latent (seed 5, index 1): only the label differs.
    other = model.sample(2, labels=[3, 7], seed=5)
    assert torch.equal(same[0], other[0]) and not torch.allclose(same[1], other[1])
    chunked = model.sample(20, seed=5, batch_size=7)
    assert torch.allclose(chunked, model.sample(20, seed=5, batch_size=20), atol=1e-6)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([3, 10], r"label 10 is out of range: labels must be in \[0, 10\)"),
        ([-1, 2], r"label -1 is out of range: labels must be in \[0, 10\)"),
        ([1.5, 2.0], "labels must be integers"),
        ([1], "1 labels were given for 2 samples"),
    ],
)
def test_bad_labels_raise_a_config_error(labels, message):
    with pytest.raises(ConfigError, match=message):
        painter_gan().sample(2, labels=labels)


def test_ganlab_sample_writes_labels(cgan_run, tmp_path):
    out = tmp_path / "samples.npz"
    cfg = compose_config(
        [
            f"ckpt_path={cgan_run / 'checkpoints' / 'last.ckpt'}",
            "num_samples=5",
            f"out={out}",
            "labels=[3,3,7]",
            "device=cpu",
        ],
        tmp_path,
        "sample",
    )
    ganlab_sample(cfg)
    with np.load(out) as data:
        assert data["labels"].dtype == np.int64
        assert data["labels"].tolist() == [3, 3, 7, 3, 3]
        assert data["samples"].shape == (5, 1, 32, 32) and data["samples"].dtype == np.float32
        samples = torch.from_numpy(data["samples"])
    # The same images as the model's own sample() of those labels (seed 0, the default).
    model, _ = load_model(cgan_run / "checkpoints" / "last.ckpt")
    assert torch.allclose(samples, model.sample(5, labels=[3, 3, 7, 3, 3], seed=0), atol=1e-6)


def test_ganlab_sample_without_labels_writes_the_balanced_ones_it_used(cgan_run, tmp_path):
    out = tmp_path / "samples.npz"
    ckpt = cgan_run / "checkpoints" / "last.ckpt"
    cfg = compose_config([f"ckpt_path={ckpt}", "num_samples=12", f"out={out}"], tmp_path, "sample")
    ganlab_sample(cfg)
    with np.load(out) as data:
        assert data["labels"].tolist() == [*range(10), 0, 1]
        samples = torch.from_numpy(data["samples"])
    model, _ = load_model(ckpt)
    balanced = model.sample(12, labels=[i % 10 for i in range(12)], seed=0)
    assert torch.allclose(samples, balanced, atol=1e-6)


def test_evaluation_protocol_names_how_conditional_samples_were_labelled(cgan_run):
    history = json.loads((cgan_run / "metrics.json").read_text())
    assert history[-1]["protocol"]["labels"] == "sample i has label i % 10 (balanced classes)"

"""Data layer: base contract, digits, 2D toy mixtures, shuffle resumability, the yaml configs."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from ganlab.data import (
    DataError,
    DigitsDataModule,
    GANDataModule,
    GaussianMixture2DDataModule,
    ImageFolderDataModule,
    TorchvisionDataModule,
    grid_centers,
    ring_centers,
)
from ganlab.data.digits import digits_split_indices

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
IMAGE_YAMLS = ["digits", "mnist", "fashion_mnist", "cifar10", "celeba", "image_folder"]
TOY_YAMLS = ["toy_ring", "toy_grid"]


def first_batch(dm: GANDataModule) -> dict[str, torch.Tensor]:
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


# ---------------------------------------------------------------- digits


@pytest.mark.parametrize("resolution", [32, 64])
def test_digits_batch_contract(resolution: int) -> None:
    dm = DigitsDataModule(resolution=resolution, batch_size=16)
    assert dm.sample_shape == (1, resolution, resolution)
    assert (dm.name, dm.data_key, dm.num_classes) == ("digits", "image", 10)
    batch = first_batch(dm)
    assert set(batch) == {"image", "label"}
    assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.int64
    assert batch["image"].shape == (16, *dm.sample_shape)
    assert batch["label"].shape == (16,)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["image"].min() < -0.5 and batch["image"].max() > 0.5
    assert ((batch["label"] >= 0) & (batch["label"] <= 9)).all()


def test_digits_match_sklearn_source() -> None:
    from sklearn.datasets import load_digits

    source = load_digits()
    all_ = DigitsDataModule(resolution=8, split="all").real_dataset("all")
    item = all_[5]
    # at the native 8x8 the data is the source, rescaled 0..16 -> -1..1
    expected = torch.from_numpy(source.images[5]).float() / 8 - 1
    torch.testing.assert_close(item["image"][0], expected)
    assert item["label"] == source.target[5]


def test_digits_three_channels_repeat_gray() -> None:
    image = first_batch(DigitsDataModule(channels=3, batch_size=8))["image"]
    assert image.shape == (8, 3, 32, 32)
    torch.testing.assert_close(image[:, 0], image[:, 1])
    torch.testing.assert_close(image[:, 0], image[:, 2])


def test_digits_split_is_fixed_stratified_and_disjoint() -> None:
    train, test = set(digits_split_indices("train")), set(digits_split_indices("test"))
    assert (len(train), len(test)) == (1437, 360)
    assert train.isdisjoint(test) and train | test == set(range(1797))
    dm = DigitsDataModule(resolution=8, seed=1)
    sizes = [len(dm.real_dataset(s)) for s in ("train", "test", "all")]
    assert sizes == [1437, 360, 1797]
    test_set = dm.real_dataset("test")
    labels = torch.stack([test_set[i]["label"] for i in range(len(test_set))])
    assert torch.bincount(labels).min() >= 35  # stratified: every digit ~20% represented
    # fixed, independent of the seed: another module with another seed gets the same test set
    other = DigitsDataModule(resolution=8, seed=7).real_dataset("test")
    assert all(torch.equal(test_set[i]["image"], other[i]["image"]) for i in range(360))


def test_digits_errors() -> None:
    with pytest.raises(DataError, match=r"split='val'.*'train', 'test', 'all'"):
        DigitsDataModule(split="val")
    with pytest.raises(DataError, match=r"resolution=4 must be an integer >= 8"):
        DigitsDataModule(resolution=4)
    with pytest.raises(DataError, match=r"channels=2 .*accepted: 1, 3"):
        DigitsDataModule(channels=2)
    with pytest.raises(DataError, match=r"num_classes=5 .*has 10 classes.*num_classes=10"):
        DigitsDataModule(num_classes=5)
    with pytest.raises(DataError, match=r"batch_size=0 must be an integer >= 1"):
        DigitsDataModule(batch_size=0)
    with pytest.raises(DataError, match=r"split='bogus'.*accepted"):
        DigitsDataModule().real_dataset("bogus")


def test_batch_larger_than_dataset_is_an_error() -> None:
    dm = GaussianMixture2DDataModule(num_samples=10, batch_size=64)
    with pytest.raises(DataError, match=r"10 samples.*batch_size=64.*drop_last=false"):
        dm.train_dataloader()
    assert len(GaussianMixture2DDataModule(num_samples=10, drop_last=False).train_dataloader())


# ---------------------------------------------------------------- 2D toy mixtures


def test_centers_exact() -> None:
    s = 2**-0.5
    expected = [(1, 0), (s, s), (0, 1), (-s, s), (-1, 0), (-s, -s), (0, -1), (s, -s)]
    torch.testing.assert_close(ring_centers(), torch.tensor(expected), atol=1e-7, rtol=0)
    torch.testing.assert_close(ring_centers(radius=2.0), 2 * torch.tensor(expected))
    grid = grid_centers()
    assert grid.shape == (25, 2)
    assert {tuple(p) for p in grid.tolist()} == {
        (float(x), float(y)) for x in range(-4, 5, 2) for y in range(-4, 5, 2)
    }


@pytest.mark.parametrize(("layout", "std", "modes"), [("ring", 0.01, 8), ("grid", 0.05, 25)])
def test_toy_mixture(layout: str, std: float, modes: int) -> None:
    dm = GaussianMixture2DDataModule(layout=layout, num_samples=20_000, batch_size=256)
    assert (dm.sample_shape, dm.data_key, dm.num_classes, dm.name) == (
        (2,),
        "point",
        modes,
        f"toy_{layout}",
    )
    assert dm.std == std and dm.centers.shape == (modes, 2)
    data = dm.real_dataset()
    points, labels = data.tensors["point"], data.tensors["label"]
    assert torch.bincount(labels, minlength=modes).min() > 20_000 / modes * 0.8
    nearest = torch.cdist(points, dm.centers).argmin(dim=1)
    assert torch.equal(nearest, labels)
    offsets = points - dm.centers[labels]
    assert offsets.std(dim=0).sub(std).abs().max() < 0.1 * std
    batch = first_batch(dm)
    assert set(batch) == {"point", "label"}
    assert batch["point"].shape == (256, 2) and batch["point"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64


def test_toy_draw_is_seeded_and_test_split_independent() -> None:
    a = GaussianMixture2DDataModule(num_samples=500, seed=3).real_dataset().tensors["point"]
    b = GaussianMixture2DDataModule(num_samples=500, seed=3).real_dataset().tensors["point"]
    c = GaussianMixture2DDataModule(num_samples=500, seed=4).real_dataset().tensors["point"]
    t = GaussianMixture2DDataModule(num_samples=500, seed=3).real_dataset("test").tensors["point"]
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, t)


def test_toy_errors() -> None:
    with pytest.raises(DataError, match=r"dim=3 .*set dim=2"):
        GaussianMixture2DDataModule(dim=3)
    with pytest.raises(DataError, match=r"num_classes=8 .*toy_grid, which has 25 classes"):
        GaussianMixture2DDataModule(layout="grid", num_classes=8)
    with pytest.raises(DataError, match=r"layout='spiral'.*'ring', 'grid'"):
        GaussianMixture2DDataModule(layout="spiral")
    with pytest.raises(DataError, match=r"std=-1.*> 0"):
        GaussianMixture2DDataModule(std=-1)
    with pytest.raises(DataError, match=r"radius=2.0 applies to layout='ring' only"):
        GaussianMixture2DDataModule(layout="grid", radius=2.0)


# ---------------------------------------------------------------- shuffle state


def epoch(loader: torch.utils.data.DataLoader) -> torch.Tensor:
    return torch.cat([batch["point"] for batch in loader])


def test_shuffle_is_reproducible_and_resumable() -> None:
    def make() -> GaussianMixture2DDataModule:
        return GaussianMixture2DDataModule(num_samples=256, batch_size=32, seed=5)

    a = make()
    loader_a = a.train_dataloader()
    first = epoch(loader_a)
    # a checkpoint goes through torch.save; the saved state must not alias the live generator
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    second = epoch(loader_a)
    assert not torch.equal(first, second)

    b = make()
    assert torch.equal(epoch(b.train_dataloader()), first)  # same seed, same order

    c = make()
    loader_c = c.train_dataloader()  # built before the restore: it must see the restored state
    buffer.seek(0)
    c.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(epoch(loader_c), second)


def test_worker_loader_settings() -> None:
    dm = GaussianMixture2DDataModule(num_samples=64, batch_size=32, num_workers=1)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 1 and loader.drop_last
    assert loader.pin_memory == torch.cuda.is_available()
    assert [len(b["point"]) for b in loader] == [32, 32]


# ---------------------------------------------------------------- yaml configs


def load_yaml(name: str, tmp_path: Path) -> DictConfig:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.seed = 0  # replaces ${seed}, the run's seed
    if "root" in cfg.keys():
        cfg.root = str(tmp_path)  # replaces ${paths.data_dir}
    if "path" in cfg.keys():  # `in cfg` is False for the mandatory `???`
        (tmp_path / "a.png").write_bytes(b"")  # construction only lists files
        cfg.path = str(tmp_path)
    return cfg


@pytest.mark.parametrize("name", IMAGE_YAMLS + TOY_YAMLS)
def test_yaml_instantiates(name: str, tmp_path: Path) -> None:
    cfg = load_yaml(name, tmp_path)
    dm = hydra.utils.instantiate(cfg)
    expected_class = {
        "digits": DigitsDataModule,
        "image_folder": ImageFolderDataModule,
        "toy_ring": GaussianMixture2DDataModule,
        "toy_grid": GaussianMixture2DDataModule,
    }.get(name, TorchvisionDataModule)
    assert type(dm) is expected_class
    assert dm.name == name
    params = inspect.signature(expected_class).parameters
    assert set(cfg) - {"_target_"} <= set(params)
    for key in ("batch_size", "num_workers", "seed", "drop_last"):
        assert key in cfg
    if name in TOY_YAMLS:
        assert cfg.dim == 2 and cfg.num_classes == dm.num_classes and cfg.batch_size == 512
        assert dm.sample_shape == (2,)
    else:
        assert {"channels", "resolution", "num_classes"} <= set(cfg) and cfg.batch_size == 64
        assert dm.sample_shape == (cfg.channels, cfg.resolution, cfg.resolution)
        assert dm.num_classes == cfg.num_classes or cfg.num_classes is None


def test_yaml_defaults() -> None:
    cfgs = {n: OmegaConf.load(CONF / f"{n}.yaml") for n in IMAGE_YAMLS + TOY_YAMLS}
    shapes = {
        n: (c.channels, c.resolution, c.num_classes) for n, c in cfgs.items() if "channels" in c
    }
    assert shapes == {
        "digits": (1, 32, 10),
        "mnist": (1, 32, 10),
        "fashion_mnist": (1, 32, 10),
        "cifar10": (3, 32, 10),
        "celeba": (3, 64, None),
        "image_folder": (3, 64, None),
    }
    assert (cfgs["toy_ring"].std, cfgs["toy_ring"].num_classes) == (0.01, 8)
    assert (cfgs["toy_grid"].std, cfgs["toy_grid"].num_classes) == (0.05, 25)
    for name in ("mnist", "fashion_mnist", "cifar10", "celeba"):
        assert OmegaConf.to_yaml(cfgs[name]).count("${paths.data_dir}") == 1
        assert cfgs[name].download is False


def test_batched_fetch_equals_row_by_row_collation() -> None:
    dm = GaussianMixture2DDataModule(num_samples=100, batch_size=16, seed=2)
    dataset = dm.real_dataset("train")
    indices = [5, 0, 99, 42]
    batched = dataset.__getitems__(indices)
    rows = torch.utils.data.default_collate([dataset[i] for i in indices])
    assert batched.keys() == rows.keys()
    assert all(torch.equal(batched[key], rows[key]) for key in rows)
    batch = next(iter(dm.train_dataloader()))
    assert batch["point"].shape == (16, 2) and batch["label"].shape == (16,)

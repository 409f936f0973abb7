"""Offline feature extractors: torch-fidelity contract, weights cache, accuracy, metrics."""

from __future__ import annotations

import logging
import math
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

import ganlab.metrics
from ganlab.data import DigitsDataModule
from ganlab.metrics import extractors
from ganlab.metrics.extractors import (
    DIGITS,
    DIGITS_VERSION,
    TINY,
    DigitsExtractor,
    DigitsNet,
    ExtractorError,
    TinyExtractor,
    cache_dir,
    weights_sha256,
)
from tests.support import UInt8Images

CACHE_NAME = f"extractors/ganlab-digits-v{DIGITS_VERSION}.pt"


def create(name: str, features=("features", "logits"), **kwargs):
    return create_feature_extractor(name, list(features), cuda=False, verbose=False, **kwargs)


def digits_uint8(split: str, resolution: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Real digits as a generated PNG would hold them."""
    data = DigitsDataModule(resolution=resolution, channels=1).real_dataset(split)
    images = torch.stack([row["image"] for row in data])
    labels = torch.stack([row["label"] for row in data])
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8), labels


class Trained(NamedTuple):
    cache: Path  # a GANLAB_CACHE_DIR holding the trained weights; tests only read it
    extractor: DigitsExtractor
    global_rng_untouched: bool


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """The one real training of this file (seconds); other tests load or copy its cache."""
    cache = tmp_path_factory.mktemp("ganlab-cache")
    rng = torch.get_rng_state()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANLAB_CACHE_DIR", str(cache))
        # inside inference mode, as a Lightning validation hook would build it
        with torch.inference_mode():
            extractor = create(DIGITS)
    return Trained(cache, extractor, torch.equal(rng, torch.get_rng_state()))


@pytest.fixture
def no_training(monkeypatch) -> list[int]:
    """Replace training by a stub that records its calls and returns untrained weights."""
    calls: list[int] = []

    def stub() -> tuple[dict[str, torch.Tensor], float]:
        calls.append(1)
        return extractors.seeded_net(DigitsNet, seed=1).state_dict(), 0.5

    monkeypatch.setattr(extractors, "train_digits_net", stub)
    return calls


# ---------------------------------------------------------------- registry and contract


def test_registered_on_import() -> None:
    assert FEATURE_EXTRACTORS_REGISTRY[DIGITS] is DigitsExtractor
    assert FEATURE_EXTRACTORS_REGISTRY[TINY] is TinyExtractor
    ganlab.metrics.register_extractors()  # idempotent: the registry itself raises on duplicates


@pytest.mark.parametrize("cls", [DigitsExtractor, TinyExtractor])
def test_static_contract(cls) -> None:
    assert cls.get_provided_features_list() == ("features", "logits")
    assert cls.get_default_feature_layer_for_metric("isc") == "logits"
    for metric in ("fid", "kid", "prc"):
        assert cls.get_default_feature_layer_for_metric(metric) == "features"
    with pytest.raises(ExtractorError, match="'ppl'.*'isc', 'fid', 'kid', 'prc'"):
        cls.get_default_feature_layer_for_metric("ppl")
    assert cls.can_be_compiled() is False
    assert cls.get_dummy_input_for_compile().dtype == torch.uint8


def test_tiny_outputs() -> None:
    extractor = create(TINY)
    x = torch.randint(0, 256, (5, 3, 40, 24), dtype=torch.uint8)  # any size is resized to 16x16
    features, logits = extractor(x)
    assert features.shape == (5, 32) and logits.shape == (5, 10)
    assert features.dtype == logits.dtype == torch.float32
    # outputs follow the order of features_list
    logits_first = create(TINY, ["logits", "features"])(x)
    assert torch.equal(logits_first[0], logits) and torch.equal(logits_first[1], features)
    (only_features,) = create(TINY, ["features"])(x)
    assert torch.equal(only_features, features)
    assert extractor(extractor.get_dummy_input_for_compile())[0].shape == (1, 32)


def test_tiny_is_deterministic_and_leaves_global_rng_alone() -> None:
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    rng = torch.get_rng_state()
    first, second = create(TINY), create(TINY)
    assert torch.equal(rng, torch.get_rng_state())
    assert first.weights_id == second.weights_id == weights_sha256(first.net)
    for a, b in zip(first(x), second(x), strict=True):
        assert torch.equal(a, b)


def test_tiny_takes_no_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ExtractorError, match="feature_extractor_weights_path"):
        create(TINY, feature_extractor_weights_path=str(tmp_path / "w.pt"))


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(2, 1, 32, 32), "torch.uint8.*torch.float32"),
        (torch.zeros(2, 2, 32, 32, dtype=torch.uint8), r"C 1 or 3, got \(2, 2, 32, 32\)"),
        (torch.zeros(1, 32, 32, dtype=torch.uint8), r"\(N, C, H, W\).*got \(1, 32, 32\)"),
        ([[0]], "torch.Tensor, got list"),
    ],
    ids=["float", "2-channels", "3-dims", "list"],
)
@pytest.mark.parametrize("name", [DIGITS, TINY])
def test_bad_input_is_named(name, images, message, trained, monkeypatch) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(trained.cache))
    with pytest.raises(ExtractorError, match=message):
        create(name)(images)


# ---------------------------------------------------------------- digits weights


def test_digits_trains_once_then_loads(trained, monkeypatch) -> None:
    assert trained.extractor.trained and trained.global_rng_untouched
    path = trained.cache / CACHE_NAME
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == DIGITS_VERSION and payload["train_split"] == "test"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    monkeypatch.setenv("GANLAB_CACHE_DIR", str(trained.cache))
    first, second = create(DIGITS), create(DIGITS)
    assert not first.trained and not second.trained
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert first.weights_id == second.weights_id == trained.extractor.weights_id
    images, _ = digits_uint8("train")
    for a, b in zip(first(images[:64]), second(images[:64]), strict=True):
        assert a.shape[0] == 64 and a.dtype == torch.float32
        assert torch.equal(a, b)
    assert first(images[:1])[0].shape == (1, 128) and first(images[:1])[1].shape == (1, 10)


def test_cache_dir_follows_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("GANLAB_CACHE_DIR")
    assert cache_dir() == Path("~/.cache/ganlab").expanduser()


def test_digits_accuracy_on_the_gans_training_split(trained, monkeypatch) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(trained.cache))
    stored = torch.load(trained.cache / CACHE_NAME, weights_only=True)["heldout_accuracy"]
    assert stored >= 0.9
    extractor = create(DIGITS, ["logits"])
    images, labels = digits_uint8("train")
    assert len(images) == 1437
    (logits,) = extractor(images)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(stored, abs=1e-3)
    # gray repeated to RGB is read back exactly; another resolution is resized inside
    (rgb_logits,) = extractor(images.repeat(1, 3, 1, 1))
    assert torch.equal(rgb_logits, logits)
    big, _ = digits_uint8("train", resolution=64)
    (big_logits,) = extractor(big)
    assert (big_logits.argmax(1) == labels).float().mean().item() >= 0.9


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "wrong-version", "missing-key", "shape"]
)
def test_damaged_cache_is_retrained(
    damage, trained, tmp_path, monkeypatch, caplog, no_training
) -> None:
    path = tmp_path / CACHE_NAME
    path.parent.mkdir()
    good = (trained.cache / CACHE_NAME).read_bytes()
    payload = torch.load(trained.cache / CACHE_NAME, weights_only=True)
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        if damage == "wrong-version":
            payload["version"] = 0
        elif damage == "missing-key":
            del payload["state_dict"]["head.bias"]
        else:
            payload["state_dict"]["head.weight"] = torch.zeros(5, 128)
        torch.save(payload, path)
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(tmp_path))

    with caplog.at_level(logging.WARNING, logger="ganlab"):
        extractor = create(DIGITS)
    assert extractor.trained and no_training == [1]
    assert any(str(path) in r.message and "retraining" in r.message for r in caplog.records)
    # the rewritten cache is whole again and loads without training
    assert not create(DIGITS).trained and no_training == [1]


def test_unwritable_cache_only_warns(tmp_path, monkeypatch, caplog, no_training) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        assert create(DIGITS).trained
    assert any("could not cache" in r.message for r in caplog.records)
    assert list(tmp_path.iterdir()) == [blocker]


def test_explicit_weights_path(trained, tmp_path, monkeypatch, no_training) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(tmp_path / "cache"))
    weights = shutil.copy(trained.cache / CACHE_NAME, tmp_path / "mine.pt")
    extractor = create(DIGITS, feature_extractor_weights_path=str(weights))
    assert not extractor.trained and extractor.weights_id == trained.extractor.weights_id
    # a bare state_dict is accepted too
    bare = tmp_path / "bare.pt"
    torch.save(trained.extractor.net.state_dict(), bare)
    assert create(DIGITS, feature_extractor_weights_path=bare).weights_id == extractor.weights_id
    assert not (tmp_path / "cache").exists() and no_training == []


@pytest.mark.parametrize("content", [None, b"garbage"], ids=["missing", "unreadable"])
def test_bad_explicit_weights_path_is_named(content, tmp_path, monkeypatch, no_training) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "missing-weights.pt"
    if content is not None:
        weights.write_bytes(content)
    with pytest.raises(ExtractorError, match=re.escape(str(weights))):
        create(DIGITS, feature_extractor_weights_path=str(weights))
    assert no_training == []  # an explicit file is never silently replaced by training


# ---------------------------------------------------------------- torch-fidelity integration


def fidelity(name: str, input1: torch.Tensor, input2: torch.Tensor) -> dict[str, float]:
    return torch_fidelity.calculate_metrics(
        input1=UInt8Images(input1),
        input2=UInt8Images(input2),
        feature_extractor=name,
        fid=True,
        isc=True,
        kid=True,
        kid_subsets=5,
        kid_subset_size=50,
        isc_splits=2,
        cuda=False,
        verbose=False,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )


@pytest.mark.parametrize("name", [TINY, DIGITS])
def test_calculate_metrics(name, trained, monkeypatch) -> None:
    monkeypatch.setenv("GANLAB_CACHE_DIR", str(trained.cache))
    real = digits_uint8("train")[0][:200]
    same = fidelity(name, real, real)
    assert all(math.isfinite(v) for v in same.values())
    assert abs(same["frechet_inception_distance"]) < 1e-3
    inverted = fidelity(name, real, 255 - real)  # white digits on black -> black on white
    assert inverted["frechet_inception_distance"] > 1
    assert inverted["kernel_inception_distance_mean"] > same["kernel_inception_distance_mean"]
    if name == DIGITS:  # a classifier is confident on real digits, over all 10 classes
        assert same["inception_score_mean"] > 5

"""Sample-quality scores: torch-fidelity's numbers, cached reference statistics, the training
callback, mode coverage through the evaluator, and `ganlab-eval`."""

import json
import logging
import os

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import Image

from ganlab.checkpoint import load_model
from ganlab.data import DigitsDataModule, GaussianMixture2DDataModule, ImageFolderDataModule
from ganlab.errors import CheckpointError, ConfigError
from ganlab.eval import evaluate
from ganlab.metrics.evaluator import SampleQuality
from ganlab.metrics.fidelity import FeatureExtractor, scores_from_features, to_uint8
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command
from tests.support import MixtureSampler, UInt8Images

IMAGE_KEYS = {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall"}


def test_scores_are_torch_fidelitys_own(tmp_path):
    """Features extracted by ganlab and scored by torch-fidelity's functions equal what
    torch_fidelity.calculate_metrics computes from the same images end to end."""
    gen = torch.Generator().manual_seed(0)
    fake = torch.rand(120, 3, 16, 16, generator=gen) * 2 - 1
    real = (torch.rand(150, 3, 16, 16, generator=gen) * 2 - 1) * 0.5
    extractor = FeatureExtractor("ganlab-tiny", ["fid", "is", "kid", "prc"])
    ours = scores_from_features(
        ["fid", "is", "kid", "prc"],
        extractor.layers,
        extractor.extract([fake]),
        extractor.extract([real]),
        kid_subsets=10,
        kid_subset_size=100,
    )
    theirs = torch_fidelity.calculate_metrics(
        input1=UInt8Images(to_uint8(fake)),
        input2=UInt8Images(to_uint8(real)),
        feature_extractor="ganlab-tiny",
        fid=True,
        isc=True,
        kid=True,
        prc=True,
        cuda=False,
        verbose=False,
        kid_subsets=10,
        kid_subset_size=100,
        batch_size=64,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    assert set(ours) == IMAGE_KEYS
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert ours["is_mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["precision"] == pytest.approx(theirs["precision"])
    assert ours["recall"] == pytest.approx(theirs["recall"])
    assert ours["fid"] > 1.0  # two visibly different sets


def digits_evaluator(cache, **kwargs):
    settings = dict(
        feature_extractor="ganlab-tiny",
        num_samples=64,
        num_reference=200,
        kid_subset_size=50,
        kid_subsets=5,
        cache_dir=str(cache),
    )
    return SampleQuality(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained")
    train(compose_config([*FAST, *SMALL_DCGAN], run_dir))
    return run_dir


def test_reference_features_are_computed_once_per_protocol(trained, tmp_path, caplog):
    model, _ = load_model(trained / "checkpoints" / "last.ckpt")
    datamodule = DigitsDataModule()
    first = digits_evaluator(tmp_path)
    scores = first.evaluate(model, datamodule).scores
    assert first.last_reference_computed
    # A new evaluator, as in a new run or ganlab-eval: the real data is not read again.
    second = digits_evaluator(tmp_path)
    assert second.evaluate(model, datamodule).scores == scores
    assert not second.last_reference_computed
    # Another protocol (more reference samples) has its own entry.
    other = digits_evaluator(tmp_path, num_reference=300)
    other.evaluate(model, datamodule)
    assert other.last_reference_computed
    assert len(list((tmp_path / "reference").glob("*.pt"))) == 2
    # A corrupt file is detected and rebuilt, with a warning.
    for path in (tmp_path / "reference").glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        again = digits_evaluator(tmp_path)
        assert again.evaluate(model, datamodule).scores == scores
    assert again.last_reference_computed
    assert "recomputing them" in caplog.text


class NoiseImages(torch.nn.Module):
    """Stands in for an image generator: `sample` follows GANModule.sample's (seed, index)
    contract."""

    device = torch.device("cpu")

    def sample(self, n, labels=None, seed=None, use_ema=True, batch_size=256, start=0):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
        return torch.rand(n, 3, 16, 16, generator=gen) * 2 - 1


def test_image_folder_statistics_follow_the_folders_contents(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / f"{i}.png")

    def evaluate():
        """A fresh run's evaluation: a new datamodule and evaluator on the same cache."""
        data = ImageFolderDataModule(str(folder), resolution=16, drop_last=False)
        evaluator = digits_evaluator(tmp_path / "cache", metrics=["fid"], num_samples=8)
        result = evaluator.evaluate(NoiseImages(), data)
        return evaluator.last_reference_computed, result.protocol["reference"]["statistics_key"]

    computed, key = evaluate()
    assert computed
    assert evaluate() == (False, key)  # unchanged folder: read from the cache
    # One file rewritten with other pixels (a new size and time): computed again, new key.
    changed = folder / "3.png"
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    computed, edited_key = evaluate()
    assert computed and edited_key != key
    assert evaluate() == (False, edited_key)
    # One file added: computed again.
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / "extra.png")
    computed, added_key = evaluate()
    assert computed and added_key not in (key, edited_key)
    assert evaluate() == (False, added_key)


def test_protocol_travels_with_the_scores(trained, tmp_path):
    model, _ = load_model(trained / "checkpoints" / "last.ckpt")
    result = digits_evaluator(tmp_path).evaluate(model, DigitsDataModule(), context={"step": 6})
    protocol = result.protocol
    assert protocol["feature_extractor"] == "ganlab-tiny"
    assert len(protocol["feature_extractor_weights"]) >= 16
    assert protocol["num_generated"] == 64 and protocol["generator"] == "ema"
    assert protocol["reference"]["dataset"] == "digits"
    assert protocol["reference"]["split"] == "train" and protocol["reference"]["count"] == 200
    assert protocol["kid"] == {"subsets": 5, "subset_size": 50}
    assert protocol["step"] == 6 and protocol["world_size"] == 1
    raw = digits_evaluator(tmp_path, use_ema=False).evaluate(model, DigitsDataModule())
    assert raw.protocol["generator"] == "raw" and raw.scores != result.scores


def test_mode_coverage_through_the_evaluator():
    data = GaussianMixture2DDataModule("grid")
    perfect = MixtureSampler(data.centers, data.std)
    result = SampleQuality().evaluate(perfect, data)
    assert result.protocol["num_generated"] == 2500
    assert result.scores["modes"] == 25 and result.scores["hq_frac"] > 0.97
    collapsed = MixtureSampler(data.centers[:1], data.std)
    assert SampleQuality().evaluate(collapsed, data).scores["modes"] == 1


@pytest.mark.parametrize("metrics, data", [(["fidd"], "image"), (["fid"], "point"), ([], "image")])
def test_unknown_metric_names_are_refused(metrics, data):
    datamodule = DigitsDataModule() if data == "image" else GaussianMixture2DDataModule()
    with pytest.raises(ConfigError, match=r"the accepted metrics are"):
        SampleQuality(metrics=metrics).resolve_metrics(datamodule)


def test_training_logs_scores_and_writes_metrics_json(trained):
    history = json.loads((trained / "metrics.json").read_text())
    assert len(history) == 1
    assert set(history[0]["scores"]) == IMAGE_KEYS
    assert history[0]["protocol"]["selection"] == "last"
    assert history[0]["protocol"]["images_seen"] == 3 * 16
    (log,) = (trained / "csv").glob("version_*/metrics.csv")
    header = log.read_text().splitlines()[0].split(",")
    assert {f"val/{key}" for key in IMAGE_KEYS} <= set(header)


def test_missing_extractor_weights_turn_metrics_off_and_training_goes_on(
    make_config, tmp_path, caplog
):
    missing = tmp_path / "weights" / "inception.pth"
    cfg = make_config(
        *SMALL_DCGAN,
        "callbacks.sample_quality.feature_extractor=inception-v3-compat",
        f"callbacks.sample_quality.feature_extractor_weights_path={missing}",
    )
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert "sample-quality metrics are off" in caplog.text and str(missing) in caplog.text


def test_eval_writes_one_json_object_beside_the_checkpoint(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    cfg = compose_config(
        [
            f"ckpt_path={ckpt}",
            "num_samples=64",
            "feature_extractor=ganlab-tiny",
            "num_reference=200",
            "kid_subset_size=50",
            "metrics=[fid,kid]",
        ],
        tmp_path,
        "eval",
    )
    record = evaluate(cfg)
    assert set(record["scores"]) == {"fid", "kid_mean", "kid_std"}
    assert record["protocol"]["selection"] == "last"  # the run's checkpoint callback wrote it
    assert record["protocol"]["step"] == 6
    written = json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert written == json.loads(json.dumps(record))


def test_eval_command_prints_json(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    result = run_command(
        "ganlab-eval",
        f"ckpt_path={ckpt}",
        "num_samples=32",
        "feature_extractor=ganlab-tiny",
        "num_reference=100",
        "kid_subset_size=20",
        "metrics=[fid,is]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record["scores"]) == {"fid", "is_mean", "is_std"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["metrics=[fid,sharpness]"], "metrics=['fid', 'sharpness'] has ['sharpness']"),
        (["ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt' does not exist"),
        (
            ["lpips_net=vgg"],
            "lpips_net=vgg: GANModule samples from latents; split, lpips_net and "
            "lpips_weights_path apply to translation models; leave it unset",
        ),
    ],
)
def test_eval_errors_name_the_bad_value(trained, tmp_path, args, message):
    ckpt = trained / "checkpoints" / "last.ckpt"
    result = run_command("ganlab-eval", f"ckpt_path={ckpt}", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_eval_refuses_a_checkpoint_of_another_kind(tmp_path):
    foreign = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 1}, foreign)
    cfg = compose_config([f"ckpt_path={foreign}"], tmp_path, "eval")
    with pytest.raises(CheckpointError, match="is not a ganlab checkpoint"):
        evaluate(cfg)

"""A conditional generator as a data source: `ganlab-augment` and the `cas` metric."""

import json
import logging
import statistics

import pytest
from PIL import Image

from ganlab.cli import compose_run
from ganlab.data import DigitsDataModule, ImageFolderDataModule
from ganlab.errors import ConfigError
from ganlab.eval import evaluate
from ganlab.metrics.cas import heldout_split, labelled_split
from ganlab.metrics.evaluator import SampleQuality
from ganlab.synthetic_data import ARMS, augment
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command

# One pass over the data in 6 batches per classifier of width 4: the command runs in seconds.
QUICK = ["epochs=1", "batch_size=256", "width=4", "seeds=[0,1]"]
PROTOCOL_KEYS = {
    "classifier",
    "data",
    "generator",
    "truncation",
    "labels",
    "latents",
    "seeds",
    "ratios",
    "low_data_fraction",
    "step",
    "images_seen",
}


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    """A one-epoch conditional GAN on digits, scored by its callback with CAS as well."""
    run_dir = tmp_path_factory.mktemp("cgan") / "run"
    overrides = [
        *FAST,
        "model=cgan",
        *SMALL_DCGAN,
        "callbacks.sample_quality.metrics=[fid,cas]",
        "callbacks.sample_quality.cas_epochs=1",
    ]
    train(compose_config(overrides, run_dir))
    return run_dir


@pytest.fixture(scope="module")
def dcgan_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dcgan") / "run"
    train(compose_config([*FAST, *SMALL_DCGAN], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_augment_trains_every_arm_and_writes_its_protocol(cgan_run, tmp_path, capsys):
    ckpt = cgan_run / "checkpoints" / "last.ckpt"
    augment(compose_run([f"ckpt_path={ckpt}", *QUICK], tmp_path, "augment_data"))
    table = capsys.readouterr().out
    record = json.loads(ckpt.with_suffix(".augment.json").read_text())
    arms = record["arms"]
    expected = ["real", "synthetic"] + [f"real_plus_synthetic_x{r}" for r in ("0.5", "1", "2")]
    assert list(arms) == [*expected, "low_data", "low_data_plus_synthetic"]
    for name, arm in arms.items():
        assert len(arm["accuracy"]) == 2 and all(0 <= a <= 1 for a in arm["accuracy"]), name
        assert arm["mean"] == pytest.approx(statistics.fmean(arm["accuracy"]))
        assert arm["std"] == pytest.approx(statistics.stdev(arm["accuracy"]))
        assert f"| {name} | {arm['real_count']} | {arm['synthetic_count']} |" in table
    real = arms["real"]["real_count"]
    assert real == record["protocol"]["data"]["train_count"] == 1437  # digits' train split
    assert (arms["synthetic"]["real_count"], arms["synthetic"]["synthetic_count"]) == (0, real)
    assert arms["real_plus_synthetic_x2"]["synthetic_count"] == 2 * real
    low = arms["low_data"]["real_count"]
    assert low == 142  # a tenth of each class of 143 to 146 images, rounded
    assert low + arms["low_data_plus_synthetic"]["synthetic_count"] == real
    protocol = record["protocol"]
    assert PROTOCOL_KEYS <= set(protocol)
    assert protocol["seeds"] == [0, 1] and protocol["generator"] == "ema"
    assert protocol["data"]["test_split"] == "test" and protocol["data"]["test_count"] == 360
    assert protocol["classifier"]["epochs"] == 1 and protocol["classifier"]["width"] == 4
    assert protocol["classifier"]["steps"] == 6  # ceil(1437 / 256), the same for every arm


def test_one_arm_and_one_seed_draw_no_samples(cgan_run, tmp_path):
    ckpt = cgan_run / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", "arms=real", "seeds=[3]", f"out={tmp_path / 'real.json'}"]
    record = augment(compose_run([*overrides, *QUICK[:3]], tmp_path, "augment_data"))
    assert list(record["arms"]) == ["real"] and record["protocol"]["seeds"] == [3]
    assert record["arms"]["real"]["std"] == 0 and 0 <= record["arms"]["real"]["mean"] <= 1
    assert json.loads((tmp_path / "real.json").read_text())["arms"] == record["arms"]


def test_unconditional_checkpoint_is_refused(dcgan_checkpoint, tmp_path):
    result = run_command("ganlab-augment", f"ckpt_path={dcgan_checkpoint}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "ganlab-augment: error: ganlab-augment needs a class-conditional generator, but the "
        "checkpoint's model (GANModule) is unconditional; give a checkpoint of a conditional "
        "model trained on labelled data (model=cgan, model=cgan_mlp, model=sngan_projection, "
        "or model=stylegan2 on labelled data)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("arms=[real,mixed]", f"each arm must be one of {list(ARMS)}"),
        ("arms=[]", "at least one"),
        ("ratios=[1,-2]", "must be a list of distinct numbers > 0"),
        ("ratios=[fast]", "e.g. ratios=[0.5,1,2]"),
        ("seeds=[0,0]", "must be a list of distinct integers >= 0"),
        ("low_data_fraction=1.5", "between 0 and 1 (exclusive)"),
        ("epochs=0", "epochs=0 must be a positive integer"),
        ("out=results.txt", "must end in .json"),
    ],
)
def test_bad_settings_name_the_value_and_what_is_accepted(cgan_run, tmp_path, override, message):
    ckpt = cgan_run / "checkpoints" / "last.ckpt"
    cfg = compose_run([f"ckpt_path={ckpt}", override], tmp_path, "augment_data")
    with pytest.raises(ConfigError) as info:
        augment(cfg)
    assert str(info.value).startswith(override.partition("=")[0] + "=")  # names the bad value
    assert message in str(info.value)


def test_cas_metric_in_ganlab_eval_and_in_the_callback(cgan_run, tmp_path, caplog):
    ckpt = cgan_run / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", "metrics=[cas]", "cas_epochs=1"]
    with caplog.at_level(logging.INFO, logger="ganlab"):
        record = evaluate(compose_config(overrides, tmp_path, "eval"))
    # the log and the protocol state what CAS generated, not the FID sample count
    assert (
        "cas: a classifier trained on 1437 generated samples (balanced labels, 1 epoch), "
        "tested on the test split of digits" in caplog.text
    )
    assert "5000" not in caplog.text
    assert record["protocol"]["num_generated"] == 1437
    assert record["protocol"]["latents"] == {"seeds": [0], "indices": [0, 1437]}
    assert set(record["scores"]) == {"cas", "cas_std"}
    assert 0 <= record["scores"]["cas"] <= 1 and record["scores"]["cas_std"] == 0
    cas = record["protocol"]["cas"]
    assert cas["generated_count"] == 1437 and cas["test_split"] == "test"
    assert cas["classifier"]["epochs"] == 1 and cas["per_seed_accuracy"] == [
        record["scores"]["cas"]
    ]
    # the training run's callback scored it beside FID, with the same protocol
    logged = json.loads((cgan_run / "metrics.json").read_text())[-1]
    assert {"fid", "cas"} <= set(logged["scores"]) and 0 <= logged["scores"]["cas"] <= 1
    assert logged["protocol"]["cas"]["classifier"]["steps"] == 23


def test_the_evaluation_plan_states_each_metrics_own_samples(tmp_path):
    evaluator = SampleQuality(metrics=["fid", "cas"], cas_seeds=2, cache_dir=str(tmp_path))
    assert evaluator.plan(DigitsDataModule()) == (
        "fid of 5000 generated samples against the train split of digits; cas: 2 classifiers "
        "trained on 1437 generated samples each (balanced labels, 10 epochs), tested on the "
        "test split of digits"
    )


def test_cas_metric_refuses_an_unconditional_model(dcgan_checkpoint, make_config, tmp_path):
    with pytest.raises(ConfigError, match=r"metrics=\[cas\] needs a class-conditional generator"):
        train(make_config(*SMALL_DCGAN, "callbacks.sample_quality.metrics=[cas]"))
    overrides = [f"ckpt_path={dcgan_checkpoint}", "metrics=[cas]"]
    with pytest.raises(ConfigError, match=r"metrics=\[cas\] needs a class-conditional generator"):
        evaluate(compose_config(overrides, tmp_path, "eval"))


def test_data_without_a_held_out_split_or_labels_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="trains on 'test': a classifier needs a real held-out"):
        heldout_split(DigitsDataModule(split="test"))
    for name in ("a.png", "b.png"):
        Image.new("L", (8, 8), 128).save(tmp_path / name)
    folder = ImageFolderDataModule(str(tmp_path), resolution=8, channels=1)
    with pytest.raises(ConfigError, match="has no class labels; a classifier needs labelled data"):
        labelled_split(folder, "train")

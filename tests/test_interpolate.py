"""ganlab-interpolate: ESRGAN's network interpolation between a PSNR-stage and a GAN-stage
checkpoint, written as a checkpoint that ganlab's loader reads; mismatched inputs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ganlab.checkpoint import load_model
from ganlab.checkpoint_io import load_safely
from ganlab.errors import CheckpointError, ConfigError
from ganlab.interpolate import interpolate, interpolate_checkpoints
from tests.conftest import run_command
from tests.test_superres import STAGE_ONE, build, fit, random_features, same, weights


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """a: the PSNR stage (no EMA copy); b: the GAN stage started from a, with an EMA copy;
    wider: a PSNR stage of a wider generator."""
    root = tmp_path_factory.mktemp("runs")
    paths = {name: root / f"{name}.ckpt" for name in ("a", "b", "wider")}
    for name, overrides, batches in (
        ("a", STAGE_ONE, 1),
        ("b", [f"model.init_from={paths['a']}", "model.ema_decay=0.9"], 2),
        ("wider", [*STAGE_ONE, "model.generator.base_width=16"], 1),
    ):
        model = build(root / name, *overrides, perceptual=random_features())
        fit(model, root / name, batches=batches).save_checkpoint(paths[name])
    return paths


def interpolated(runs, tmp_path: Path, alpha: float):
    out = tmp_path / f"blend_{alpha}.ckpt"
    interpolate(
        OmegaConf.create(
            {"a": str(runs["a"]), "b": str(runs["b"]), "alpha": alpha, "out": str(out)}
        )
    )
    return out


def test_alpha_0_and_1_reproduce_a_and_b_exactly(runs, tmp_path):
    a, _ = load_model(runs["a"])
    b, _ = load_model(runs["b"])
    at_a, _ = load_model(interpolated(runs, tmp_path, 0))
    at_b, _ = load_model(interpolated(runs, tmp_path, 1))
    assert same(weights(at_a.generator), weights(a.generator))
    # a has no EMA copy: the blend's EMA copy starts from the generator a samples with
    assert same(weights(at_a.generator_ema), weights(a.generator))
    assert same(weights(at_b.generator), weights(b.generator))
    assert same(weights(at_b.generator_ema), weights(b.generator_ema))
    assert same(weights(at_b.discriminator), weights(b.discriminator))
    source = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(at_a.translate(source), a.translate(source))
    assert torch.equal(at_b.translate(source), b.translate(source))


def test_the_midpoint_is_the_mean_of_the_weights(runs, tmp_path):
    a = load_safely(runs["a"])["state_dict"]
    b = load_safely(runs["b"])["state_dict"]
    mid = load_safely(interpolated(runs, tmp_path, 0.5))["state_dict"]
    generator_keys = [k for k in b if k.startswith("generator.")]
    assert generator_keys
    for key in generator_keys:
        torch.testing.assert_close(mid[key], (a[key] + b[key]) / 2)
        ema_key = key.replace("generator.", "generator_ema.", 1)
        torch.testing.assert_close(mid[ema_key], (a[key] + b[ema_key]) / 2)
    assert not same({k: mid[k] for k in generator_keys}, {k: b[k] for k in generator_keys})
    model, _ = load_model(interpolated(runs, tmp_path, 0.5))  # ganlab's loader reads it
    assert model.translate(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_the_output_records_the_blend_and_holds_no_training_state(runs):
    blend = interpolate_checkpoints(runs["a"], runs["b"], 0.25)
    b = load_safely(runs["b"])
    assert blend["ganlab"]["interpolation"] == {
        "a": str(runs["a"]),
        "b": str(runs["b"]),
        "alpha": 0.25,
    }
    assert blend["ganlab"]["config"] == b["ganlab"]["config"]
    assert (blend["epoch"], blend["global_step"]) == (b["epoch"], b["global_step"])
    assert "optimizer_states" not in blend and "rng_states" not in blend["ganlab"]


def test_different_generators_are_refused_naming_the_setting(runs):
    with pytest.raises(ConfigError) as err:
        interpolate_checkpoints(runs["wider"], runs["b"], 0.5)
    assert "model.generator.base_width=16 in a, 8 in b" in str(err.value)


def test_weights_of_other_shapes_are_refused_naming_the_keys(runs, tmp_path):
    edited = load_safely(runs["a"])
    edited["state_dict"]["generator.conv_last.weight"] = torch.zeros(3, 8, 1, 1)
    path = tmp_path / "edited.ckpt"
    torch.save(edited, path)
    with pytest.raises(CheckpointError) as err:
        interpolate_checkpoints(path, runs["b"], 0.5)
    assert "conv_last.weight (3, 8, 1, 1) instead of (3, 8, 3, 3)" in str(err.value)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, True, "half"])
def test_alpha_outside_0_1_is_refused(runs, alpha):
    with pytest.raises(ConfigError, match=r"alpha=.* must be a number in \[0, 1\]"):
        interpolate_checkpoints(runs["a"], runs["b"], alpha)


def test_bad_files_and_outputs_are_refused(runs, tmp_path):
    with pytest.raises(CheckpointError, match=r"^a='/nowhere.ckpt' does not exist"):
        interpolate_checkpoints("/nowhere.ckpt", runs["b"], 0.5)
    given = {"a": str(runs["a"]), "b": str(runs["b"]), "alpha": 0.5}
    with pytest.raises(ConfigError, match=r"out=.* is checkpoint b; write to another file"):
        interpolate(OmegaConf.create({**given, "out": str(runs["b"])}))
    with pytest.raises(ConfigError, match=r"out='blend.pt' must end in .ckpt"):
        interpolate(OmegaConf.create({**given, "out": "blend.pt"}))


def test_the_command_writes_a_checkpoint_and_reports_mistakes_in_one_line(runs, tmp_path):
    out = tmp_path / "blend.ckpt"
    done = run_command(
        "ganlab-interpolate",
        f"a={runs['a']}",
        f"b={runs['b']}",
        "alpha=0.5",
        f"out={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "generator = 0.5 * a + 0.5 * b" in done.stdout
    assert load_safely(out)["ganlab"]["interpolation"]["alpha"] == 0.5
    failed = run_command(
        "ganlab-interpolate",
        f"a={runs['a']}",
        f"b={runs['b']}",
        "alpha=2",
        f"out={out}",
        cwd=tmp_path,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        "ganlab-interpolate: error: alpha=2 must be a number in [0, 1] (0: a's weights, 1: b's, "
        "0.8: mostly the GAN stage's, as in ESRGAN's demo)"
    )


def test_training_refuses_to_resume_a_blend_naming_what_it_lacks(runs, tmp_path):
    out = interpolated(runs, tmp_path, 0.5)
    failed = run_command("ganlab-train", f"ckpt_path={out}", cwd=tmp_path)
    assert failed.returncode == 2
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ganlab-train: error: ckpt_path='{out}' holds no training state")
    assert "a ganlab-interpolate blend" in message and "optimizer_states" in message
    assert "model.init_from=" in message

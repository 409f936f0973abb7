"""The training step reads nothing on the host between logging steps, and the GPU speed switches
(channels_last, compile, fused Adam, TF32, deterministic sampling) do what docs/speed.md says."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import traceback
from collections import defaultdict
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses import BCELoss
from ganlab.models import GANModule
from ganlab.networks import DCGANDiscriminator, DCGANGenerator, spectral_norm_
from ganlab.speed import (
    compile_network,
    deterministic_kernels,
    fast_optimizer,
    float32_matmul_precision,
    has_spectral_norm,
)
from ganlab.train import train
from tests.conftest import REPO_ROOT, SMALL_DCGAN

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Every way a tensor's value reaches the host (each one waits for the device on a GPU).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
WINDOW = (3, 15)  # the D steps whose host reads are counted (past the first steps' setup)
# Adam's for-loop kernel reads its step count with .item(): torch keeps that count on the host
# when the kernel is not fused or capturable, so on a GPU it is no sync (fused Adam reads none).
HOST_SIDE = ("torch/optim/",)


class HostReadCounter(pl.Callback):
    """Counts host reads of tensors made during D steps WINDOW[0]..WINDOW[1]-1, per step, noting
    which steps were logging steps and where each read came from."""

    def __init__(self) -> None:
        self.reads: dict[int, list[str]] = defaultdict(list)
        self.logging_steps: set[int] = set()
        self.originals: dict[str, object] = {}
        self.step: int | None = None

    def install(self) -> None:
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            self.originals[name] = original
            setattr(torch.Tensor, name, self.counting(name, original))

    def uninstall(self) -> None:
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, original)
        self.originals = {}

    def counting(self, name, original):
        @functools.wraps(original)
        def read(tensor, *args, **kwargs):
            if self.step is not None:
                caller = traceback.extract_stack(limit=2)[0]
                if not any(part in caller.filename for part in HOST_SIDE):
                    self.reads[self.step].append(f"{name} at {caller.filename}:{caller.lineno}")
            return original(tensor, *args, **kwargs)

        return read

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = pl_module.d_steps
        if step == WINDOW[0]:
            self.install()
        if WINDOW[0] <= step < WINDOW[1]:
            self.step = step
            if trainer._logger_connector.should_update_logs:
                self.logging_steps.add(step)
        elif step == WINDOW[1]:
            self.step = None
            self.uninstall()

    def on_train_end(self, trainer, pl_module):
        self.step = None
        self.uninstall()


def test_the_steady_state_step_reads_nothing_on_the_host_between_logging_steps(make_config):
    cfg = make_config(
        *SMALL_DCGAN,
        "trainer.limit_train_batches=16",
        "trainer.log_every_n_steps=5",
        "callbacks.sample_quality=null",
    )
    counter = HostReadCounter()
    try:
        train(cfg, extra_callbacks=[counter])
    finally:
        counter.uninstall()
    assert counter.logging_steps == {4, 9, 14}  # Lightning's 5th, 10th and 15th batches
    quiet = {
        step: reads
        for step, reads in counter.reads.items()
        if step not in counter.logging_steps and reads
    }
    assert quiet == {}
    # The health check's reads happen on logging steps, and only there.
    assert all(counter.reads[step] for step in counter.logging_steps)


def small_gan(**kwargs) -> GANModule:
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return GANModule(
        DCGANGenerator(16, 1, 32, base_width=4),
        DCGANDiscriminator(1, 32, base_width=4),
        BCELoss(),
        adam,
        adam,
        latent_dim=16,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("name", "value"), [("compile", "maybe"), ("channels_last", 1), ("compile", None)]
)
def test_a_switch_that_is_not_a_boolean_is_refused(name, value):
    with pytest.raises(ConfigError, match=f"model.{name}={value!r} must be true or false"):
        small_gan(**{name: value})


def test_ganlab_train_refuses_compile_maybe_before_building_anything(make_config):
    with pytest.raises(ConfigError) as caught:
        train(make_config("model.compile=maybe"))
    assert str(caught.value) == (
        "model.compile='maybe' must be true or false (GANModule takes compile: bool)"
    )


def test_channels_last_converts_conv_weights_and_the_inputs_of_every_network(make_config):
    layouts = []

    class Kept(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            def record(module, args):
                layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))

            pl_module.discriminator.register_forward_pre_hook(record)  # after the conversion

        def on_train_end(self, trainer, pl_module):
            self.model = pl_module

    cfg = make_config(*SMALL_DCGAN, "model.channels_last=true", "callbacks.sample_quality=null")
    cfg.trainer.limit_train_batches = 2
    kept = Kept()
    train(cfg, extra_callbacks=[kept])
    assert layouts and all(layouts)  # real batches and fakes alike
    model = kept.model
    conv_weights = [p for p in model.parameters() if p.dim() == 4]
    assert conv_weights
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)


def test_channels_last_on_an_mlp_warns_once_and_changes_nothing(make_config, caplog):
    cfg = make_config("model=gan_mlp", "model.channels_last=true", "callbacks.sample_quality=null")
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "channels_last" in r.getMessage()]
    assert warnings == [
        "model.channels_last=true has no effect on GANModule: its networks have no 2D "
        "convolutions (channels_last only changes the layout of 4D tensors)"
    ]


def test_compiling_with_a_backend_that_does_not_exist_warns_and_stays_eager(caplog):
    network = nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        compiled = compile_network(network, "generator", backend="no_such_backend")
    assert not compiled
    assert "forward" not in network.__dict__  # the class's forward, untouched
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "model.compile=true: compiling the generator failed (InvalidBackend: "
    )
    assert message.endswith("it runs eagerly instead")
    assert network(torch.ones(1, 3)).shape == (1, 2)


def test_spectrally_normalized_networks_are_not_compiled_and_say_why(caplog):
    # Compiled, SNGAN's discriminator fails in its first backward: spectral norm's power
    # iteration updates its vectors in place between the real and the fake forward.
    network = spectral_norm_(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(36, 1)))
    with caplog.at_level(logging.WARNING, logger="ganlab"):
        compiled = compile_network(network, "discriminator")
    assert not compiled
    assert "forward" not in network.__dict__
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "model.compile=true: the discriminator is not compiled: its spectral normalization"
    )
    assert not has_spectral_norm(nn.Linear(3, 2)) and has_spectral_norm(network)


@pytest.mark.slow
def test_a_compilation_that_fails_at_the_first_step_falls_back_to_eager(make_config, caplog):
    # A real failure at the first call: Inductor cannot build its C++ kernels without a compiler.
    from torch._inductor import config as inductor_config

    cfg = make_config(*SMALL_DCGAN, "model.compile=true", "callbacks.sample_quality=null")
    cfg.trainer.limit_train_batches = 2
    with (
        inductor_config.patch({"cpp.cxx": (None, "/nonexistent/g++")}),
        caplog.at_level(logging.WARNING, logger="ganlab"),
    ):
        train(cfg)
    failures = [r.getMessage() for r in caplog.records if "compiling the" in r.getMessage()]
    assert failures  # each network that failed says so once, naming the failure
    assert all(m.endswith("it runs eagerly instead") for m in failures)
    assert any("compiling the generator failed" in m for m in failures)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()  # trained on


def test_fused_adam_only_when_every_parameter_is_on_cuda():
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    cpu_params = [nn.Parameter(torch.ones(2))]
    assert fast_optimizer(adam, cpu_params).defaults["fused"] is None  # CPU: torch's default


@needs_cuda
def test_fused_adam_on_cuda_and_foreach_for_other_optimizers():
    params = [nn.Parameter(torch.ones(2, device="cuda"))]
    assert fast_optimizer(functools.partial(torch.optim.Adam, lr=1e-3), params).defaults["fused"]
    chosen = functools.partial(torch.optim.AdamW, lr=1e-3, foreach=False)
    assert not fast_optimizer(chosen, params).defaults["fused"]  # the config's choice stands
    assert fast_optimizer(functools.partial(torch.optim.SGD, lr=0.1), params).defaults["foreach"]


def test_trainer_gpu_means_tf32_matmuls_and_an_unknown_precision_is_refused():
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        assert float32_matmul_precision({"trainer": {"accelerator": "gpu"}}) == "high"
        assert torch.backends.cudnn.allow_tf32
        chosen = {"float32_matmul_precision": "highest", "trainer": {"accelerator": "gpu"}}
        assert float32_matmul_precision(chosen) == "highest"
        assert not torch.backends.cudnn.allow_tf32
        assert float32_matmul_precision({"trainer": {"accelerator": "cpu"}}) == "highest"
        with pytest.raises(ConfigError) as caught:
            float32_matmul_precision({"float32_matmul_precision": "fast"})
        assert str(caught.value) == (
            "float32_matmul_precision='fast' is not one of highest, high, medium (or null: "
            "high with trainer.accelerator=gpu, torch's default otherwise)"
        )
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


def test_ganlab_train_refuses_an_unknown_matmul_precision_before_building_anything(make_config):
    with pytest.raises(ConfigError, match="float32_matmul_precision='fast' is not one of"):
        train(make_config("float32_matmul_precision=fast"))


def test_deterministic_kernels_on_cuda_are_switched_on_inside_and_restored_after():
    # Only flags: this runs without a GPU too.
    before = torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels("cuda"):
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (
        before
    )
    with deterministic_kernels("cpu"):  # CPU kernels are deterministic already
        assert torch.backends.cudnn.deterministic == before[0]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_the_same_seed_gives_identical_samples_on_the_same_device(device):
    model = small_gan().to(device)
    first, second = model.sample(8, seed=3), model.sample(8, seed=3)
    assert torch.equal(first, second)
    assert not torch.equal(first, model.sample(8, seed=4))


def run_throughput(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_throughput_benchmark_tables_both_loops_and_each_switch(tmp_path):
    tiny = ["--steps=2", "--warmup=1", "--repeats=1", "--base-width=4"]
    result = run_throughput(
        *tiny,
        "--batch-sizes=4",
        "--sweep",
        "--sweep-batch-size=2",
        "--switches=channels_last",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for variant in ("plain loop fp32", "plain loop bf16 autocast", "ganlab 32-true"):
        assert f"| {variant} | " in result.stdout
    assert "ratio ganlab/plain fp32, batch 4: " in result.stdout
    assert "## ganlab switches, sngan 32, batch 2, 32-true" in result.stdout
    assert "| + channels_last | " in result.stdout and "load average" in result.stdout


def test_throughput_benchmark_refuses_an_unknown_switch(tmp_path):
    result = run_throughput("--sweep", "--switches=turbo", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "--switches: 'turbo' is not one of channels_last, compile, fused_adam, tf32" in (
        result.stderr
    )


def test_throughput_benchmark_refuses_a_family_without_a_cifar10_recipe(tmp_path):
    result = run_throughput("--no-table", "--families=progan,colorize", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "--families: 'colorize' has no CIFAR-10 recipe; accepted: biggan," in result.stderr
    assert "progan" not in result.stderr.split("accepted:")[0]


def test_throughput_times_progan_at_its_last_level_after_the_warm_up_batch(tmp_path):
    """The second ProGAN row's schedule: after one warm-up batch the model is at 32x32."""
    from hydra.utils import instantiate

    from ganlab.cli import compose_run

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import throughput
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    (first_name, first), (last_name, last) = throughput.family_rows("progan")
    assert "4x4" in first_name and first == [] and "32x32" in last_name
    small = ["model.generator.channel_max=8", "model.discriminator.channel_max=8"]
    cfg = compose_run(["experiment=progan_cifar10", *last, *small], tmp_path)
    model = instantiate(cfg.model)
    assert model.schedule.at(0) == (0, 1.0)
    assert model.schedule.at(16) == (model.generator.max_level, 1.0) == (3, 1.0)

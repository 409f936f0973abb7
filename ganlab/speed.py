"""GPU speed switches, each one config value: channels_last memory format, torch.compile of the
networks with an eager fallback, fused Adam on CUDA, and the float32 matmul precision (TF32).

Every switch is correct on any device; where it cannot help (a CPU, an MLP) it is a no-op, and
the places where it is say so once in the log. docs/speed.md describes them."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ganlab.errors import ConfigError

log = logging.getLogger("ganlab")

# torch.set_float32_matmul_precision's names: "high" and "medium" allow TF32 (and bf16) inside
# float32 matmuls and convolutions on GPUs that have it; "highest" keeps full float32.
MATMUL_PRECISIONS = ("highest", "high", "medium")
FUSABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


def check_switch(name: str, value: Any) -> bool:
    """A boolean config value (`model.compile=true`); anything else is a ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be true or false")
    return value


def set_float32_matmul_precision(value: str | None) -> str:
    """Apply a `float32_matmul_precision` (None: leave torch's setting) and return the
    precision in force, for the protocol of scores."""
    if value is not None:
        if value not in MATMUL_PRECISIONS:
            raise ConfigError(
                f"float32_matmul_precision={value!r} is not one of "
                f"{', '.join(MATMUL_PRECISIONS)} (or null: high with trainer.accelerator=gpu, "
                "torch's default otherwise)"
            )
        torch.set_float32_matmul_precision(value)
        # cuDNN convolutions follow the same choice ("highest": no TF32 there either).
        torch.backends.cudnn.allow_tf32 = value != "highest"
    return torch.get_float32_matmul_precision()


def float32_matmul_precision(cfg: Mapping[str, Any]) -> str:
    """Apply a run config's `float32_matmul_precision`; null means "high" (TF32) when the trainer
    asks for a GPU (trainer=gpu) and torch's setting otherwise. Returns the precision in force."""
    value = cfg.get("float32_matmul_precision")
    trainer = cfg.get("trainer") or {}
    if value is None and str(trainer.get("accelerator", "auto")) in ("gpu", "cuda"):
        value = "high"
    return set_float32_matmul_precision(value)


def matmul_protocol() -> dict[str, Any]:
    """How float32 matmuls and convolutions ran, for a score's protocol."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


# ---------------------------------------------------------------------- channels_last
def has_conv_weights(networks: Iterable[nn.Module]) -> bool:
    """Whether any network holds 4D weights (2D convolutions), the only ones channels_last
    changes."""
    return any(p.dim() == 4 for network in networks for p in network.parameters())


def to_channels_last(module: nn.Module, networks: Mapping[str, nn.Module]) -> bool:
    """Convert `module` (weights, buffers, EMA copy) to channels_last, and every 4D input of the
    `networks` (real batches, images a translation model reads) on its way in, when they have
    convolutions; warn once and change nothing otherwise. Returns whether it converted."""
    if not has_conv_weights(networks.values()):
        log.warning(
            "model.channels_last=true has no effect on %s: its networks have no 2D "
            "convolutions (channels_last only changes the layout of 4D tensors)",
            type(module).__name__,
        )
        return False
    module.to(memory_format=torch.channels_last)
    for network in networks.values():
        # A forward pre-hook reaches every input of every variant's step; the generator's
        # outputs are channels_last already, so converting them again costs nothing.
        network.register_forward_pre_hook(inputs_to_channels_last, with_kwargs=True)
    return True


def inputs_to_channels_last(module: nn.Module, args: tuple, kwargs: dict):
    return batch_to_channels_last(args), batch_to_channels_last(kwargs)


def batch_to_channels_last(batch: Any) -> Any:
    """Every 4D floating tensor of a batch (dict, list, tuple or tensor) in channels_last."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return type(batch)({k: batch_to_channels_last(v) for k, v in batch.items()})
    if isinstance(batch, list | tuple):
        return type(batch)(batch_to_channels_last(v) for v in batch)
    return batch


# ---------------------------------------------------------------------- torch.compile
def compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which TorchDynamo and Inductor report a failed compilation."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return (TorchDynamoException, InductorError)


def warn_eager(name: str, error: BaseException) -> None:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    log.warning(
        "model.compile=true: compiling the %s failed (%s: %s); it runs eagerly instead",
        name,
        type(error).__name__,
        first_line[:300],
    )


def has_spectral_norm(network: nn.Module) -> bool:
    """Whether a layer of `network` is spectrally normalized by torch's parametrization."""
    return any(
        type(parametrization).__name__ == "_SpectralNorm"
        for module in network.modules()
        if parametrize.is_parametrized(module)
        for parametrizations in module.parametrizations.values()
        for parametrization in parametrizations
    )


def compile_network(network: nn.Module, name: str, backend: str = "inductor") -> bool:
    """Compile `network.forward` in place (its state_dict keys do not change). A compilation
    that fails, when compiling starts or at any later call (Dynamo and Inductor compile on the
    first call with new shapes, the backward pass too), is reported once and the network runs
    eagerly from then on. Returns whether the network was compiled."""
    if has_spectral_norm(network):
        log.warning(
            "model.compile=true: the %s is not compiled: its spectral normalization updates its "
            "power-iteration vectors in place in every training forward, which a compiled "
            "backward cannot differentiate (RuntimeError: a variable needed for gradient "
            "computation has been modified by an inplace operation); it runs eagerly",
            name,
        )
        return False
    eager = network.forward
    try:
        compiled = torch.compile(eager, backend=backend)
    except compile_errors() as error:  # an unknown backend name, a bad option
        warn_eager(name, error)
        return False

    @functools.wraps(eager)
    def forward(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except compile_errors() as error:
            # Nothing of the failed call ran: the compiled code never started.
            warn_eager(name, error)
            del network.forward  # the class's forward again
            return eager(*args, **kwargs)

    network.forward = forward
    return True


# ---------------------------------------------------------------------- optimizers
def fast_optimizer(
    factory: Callable[..., torch.optim.Optimizer], params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """`factory(params)`, with Adam/AdamW's fused CUDA kernel (`fused=True`) when every parameter
    is on a CUDA device and the config set neither `fused` nor `foreach`; other optimizers on CUDA
    get `foreach=True` when they take it and it was not set. On a CPU nothing changes."""
    params = list(params)
    if not params or not all(p.is_cuda for p in params):
        return factory(params)
    given = getattr(factory, "keywords", None) or {}
    if "fused" in given or "foreach" in given:
        return factory(params)
    optimizer_class = getattr(factory, "func", factory)
    if isinstance(optimizer_class, type) and issubclass(optimizer_class, FUSABLE_OPTIMIZERS):
        return factory(params, fused=True)
    try:
        return factory(params, foreach=True)
    except TypeError:  # an optimizer without a foreach implementation
        return factory(params)


# ---------------------------------------------------------------------- reproducible sampling
@contextlib.contextmanager
def deterministic_kernels(device: torch.device | str | None):
    """On CUDA: cuDNN and torch's deterministic algorithms inside the block (the same seed then
    gives bit-identical samples on the same device), the previous settings restored after. On
    other devices CPU kernels are already deterministic: nothing changes."""
    if device is None or torch.device(device).type != "cuda":
        yield
        return
    previous = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    # warn_only: an op without a deterministic CUDA kernel warns instead of failing sampling.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[:2]
        torch.use_deterministic_algorithms(previous[2], warn_only=previous[3])

"""Standing statistics (Brock et al., 2019, appendix): before evaluating a generator with
BatchNorm in eval mode, recompute every BatchNorm's running mean and variance as the plain
average over many batches the generator itself produces, instead of the exponential average
left by training. BigGAN-PyTorch does it with 16 batches (`utils.accumulate_standing_stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ganlab.errors import ConfigError


@torch.no_grad()
def standing_statistics_(
    network: nn.Module,
    draw_inputs: Callable[[], Sequence[torch.Tensor]],  # one batch of network inputs per call
    num_batches: int = 16,
) -> nn.Module:
    """Reset the running statistics of every BatchNorm of `network`, run it on `num_batches`
    batches from `draw_inputs()` with momentum None (PyTorch's cumulative average), then leave
    it in eval mode, each BatchNorm's momentum as before. Only the BatchNorm layers run in
    train mode: spectral norm's power iteration (and any dropout) stays in eval mode, so the
    weights do not move while their statistics are taken. Returns `network`."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ConfigError(f"standing statistics num_batches={num_batches!r} must be an int >= 1")
    norms = [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        raise ConfigError(
            f"{type(network).__name__} has no BatchNorm with running statistics; standing "
            "statistics apply to generators with BatchNorm (BigGAN, SNGAN, DCGAN)"
        )
    momenta = [norm.momentum for norm in norms]
    network.eval()
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        for _ in range(num_batches):
            network(*draw_inputs())
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            norm.eval()
    return network


def check_standing_stats(num_batches: int | None) -> int | None:
    """`standing_stats=` of ganlab-sample/ganlab-eval: null or a number of batches >= 1."""
    bad = isinstance(num_batches, bool) or not isinstance(num_batches, int)
    if num_batches is not None and (bad or num_batches < 1):
        raise ConfigError(
            f"standing_stats={num_batches!r} must be an integer >= 1, the batches of fresh "
            "latents the BatchNorm statistics are taken over (BigGAN: 16), or null"
        )
    return num_batches


def sampling_statistics_(model, num_batches: int, batch_size: int, use_ema: bool, seed: int):
    """Standing statistics of the generator `model.sample(use_ema=...)` runs (a GANModule): K
    batches of fresh N(0, 1) latents (untruncated, as BigGAN-PyTorch) and, for a conditional
    model, uniformly drawn labels, all from `seed`, so every process computes the same. Returns a
    restore function that puts the running statistics back as they were."""
    network = model.sampling_generator(use_ema)
    saved = {
        k: v.clone()
        for k, v in network.state_dict().items()
        if "running_" in k or k.endswith("num_batches_tracked")
    }
    devices = [model.device] if model.device.type == "cuda" else []

    def draw_inputs() -> tuple[torch.Tensor, ...]:
        z = torch.randn(batch_size, model.latent_dim).to(model.device)
        if not getattr(model, "conditional", False):
            return (z,)
        return z, torch.randint(model.num_classes, (batch_size,)).to(model.device)

    was_training = network.training
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        standing_statistics_(network, draw_inputs, num_batches)
    network.train(was_training)

    def restore() -> None:
        network.load_state_dict(saved, strict=False)

    return restore

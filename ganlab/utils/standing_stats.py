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

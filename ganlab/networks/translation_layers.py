"""Pieces shared by the image-to-image networks: the norm choice, its bias rule and size checks."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "instance", "none")


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm, or InstanceNorm without affine or running stats as pix2pix/CycleGAN use it."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm={norm!r} is not supported; accepted: {NORMS}")


def conv_bias(norm: str) -> bool:
    """A conv followed by BatchNorm drops its bias (BN's shift replaces it), as the official code.

    The official code also drops it for norm 'none'; here that conv keeps its bias, since nothing
    else would shift its output.
    """
    make_norm(norm, 1)  # refuse an unknown name here too
    return norm != "batch"


def check_divisible(height: int, width: int, factor: int, network: str) -> None:
    """Refuse an input whose sides the network's strides cannot halve and restore exactly."""
    if height % factor or width % factor:
        raise ValueError(
            f"{network} needs height and width divisible by {factor}; got {height}x{width} "
            f"(sizes that work: multiples of {factor}, e.g. {factor}, {2 * factor}, {4 * factor})"
        )

"""`ganlab-interpolate`: ESRGAN's network interpolation (Wang et al., 2018, net_interp.py), a
blend of two trainings of one generator, theta = (1 - alpha) * theta_a + alpha * theta_b, that
trades the PSNR stage's fidelity for the GAN stage's detail continuously.

The output is a ganlab checkpoint of b's run with the blended generator (and EMA copy):
ganlab-sample and ganlab-eval read it, and `model.init_from=OUT` fine-tunes from it. It holds no
optimizer or RNG state, since those belong to neither blend end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ganlab.checkpoint import read_checkpoint
from ganlab.checkpoint_io import atomic_save
from ganlab.cli import entry_point
from ganlab.errors import CheckpointError, ConfigError
from ganlab.models.superres import state_dict_mismatch

GENERATOR_PARTS = ("generator", "generator_ema")
KEPT = ("epoch", "global_step", "pytorch-lightning_version")  # read by ganlab-eval's protocol


def check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ConfigError(
            f"alpha={alpha!r} must be a number in [0, 1] (0: a's weights, 1: b's, 0.8: mostly "
            "the GAN stage's, as in ESRGAN's demo)"
        )
    return float(alpha)


def first_difference(a: Any, b: Any, path: str) -> str | None:
    """The first key (dotted) at which two plain configs differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(
                a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}"
            )
            if found:
                return found
        return None
    return None if a == b else f"{path}={a!r} in a, {b!r} in b"


def part_of(state: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    prefix = f"{part}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def blend(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """torch.lerp, exact at alpha 0 and 1; integer buffers (BatchNorm's batch counts) are taken
    from the nearer end."""
    if not a.is_floating_point():
        return (b if alpha >= 0.5 else a).clone()
    return torch.lerp(a, b.to(a.dtype), alpha)


def interpolate_checkpoints(a: str | Path, b: str | Path, alpha: float) -> dict[str, Any]:
    """b's checkpoint with its generator (and EMA copy) blended towards a's by 1 - alpha."""
    alpha = check_alpha(alpha)
    checkpoints = {}
    for name, path in (("a", a), ("b", b)):
        try:
            checkpoints[name] = read_checkpoint(path)
        except CheckpointError as err:  # its message names the file as ckpt_path=
            raise CheckpointError(str(err).replace("ckpt_path=", f"{name}=", 1)) from err
    ckpt_a, ckpt_b = checkpoints["a"], checkpoints["b"]
    generators = [
        (ckpt["ganlab"]["config"].get("model") or {}).get("generator") for ckpt in (ckpt_a, ckpt_b)
    ]
    difference = first_difference(*generators, "model.generator")
    if difference:
        raise ConfigError(
            f"a={str(a)!r} and b={str(b)!r} are runs of different generators ({difference}); "
            "network interpolation blends two trainings of one generator, e.g. ESRGAN's PSNR "
            "stage (a) and the GAN stage started from it (b)"
        )
    state_a, state_b = ckpt_a["state_dict"], ckpt_b["state_dict"]
    blended = dict(state_b)
    for part in GENERATOR_PARTS:
        theirs = part_of(state_b, part)
        if not theirs:
            continue
        # a run without an EMA copy samples its generator: that is what b's EMA copy meets
        mine = part_of(state_a, part) or part_of(state_a, "generator")
        problem = state_dict_mismatch(mine, theirs)
        if problem:
            raise CheckpointError(
                f"a={str(a)!r} and b={str(b)!r}: the {part} weights differ in keys or shapes "
                f"({problem}); both must be checkpoints of the same generator"
            )
        for key, value in theirs.items():
            blended[f"{part}.{key}"] = blend(mine[key], value, alpha)
    run = ckpt_b["ganlab"]
    return {
        **{key: ckpt_b[key] for key in KEPT if key in ckpt_b},
        "state_dict": blended,
        "ganlab": {
            "config": run["config"],
            "progress": run.get("progress", {}),
            "interpolation": {"a": str(a), "b": str(b), "alpha": alpha},
        },
    }


def interpolate(cfg: DictConfig) -> Path:
    out = Path(str(cfg.out)).expanduser()
    if out.suffix != ".ckpt":
        raise ConfigError(f"out={str(cfg.out)!r} must end in .ckpt")
    for name in ("a", "b"):
        if out.resolve() == Path(str(cfg[name])).expanduser().resolve():
            raise ConfigError(f"out={str(cfg.out)!r} is checkpoint {name}; write to another file")
    checkpoint = interpolate_checkpoints(cfg.a, cfg.b, cfg.alpha)
    atomic_save(checkpoint, out)
    alpha = checkpoint["ganlab"]["interpolation"]["alpha"]
    print(f"wrote {out.resolve()}: generator = {1 - alpha:g} * a + {alpha:g} * b")
    return out


@entry_point("ganlab-interpolate", "interpolate")
def main(cfg: DictConfig) -> None:
    interpolate(cfg)


if __name__ == "__main__":
    main()

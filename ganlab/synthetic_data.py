"""`ganlab-augment`: a conditional generator as a data source. Trains the fixed classifier of
`ganlab.metrics.cas` on real data, on generated data alone (the classification accuracy score),
on real data enlarged by generated data, and on a tenth of the real data with and without
generated data; tests each on the real held-out split over several seeds, prints a table of
accuracy mean ± std and writes the results with their protocol as JSON."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ganlab.checkpoint import existing_checkpoint, model_from_checkpoint, read_checkpoint
from ganlab.cli import entry_point, positive_int
from ganlab.errors import ConfigError, GanlabError
from ganlab.eval import build_data
from ganlab.metrics.cas import (
    ClassifierRecipe,
    LabelledImages,
    generate,
    heldout_split,
    labelled_split,
    require_conditional,
    summary,
    train_and_test,
)
from ganlab.sample import _truncation, pick_device

log = logging.getLogger("ganlab")

COMMAND = "ganlab-augment"
ARMS = ("real", "synthetic", "real_plus_synthetic", "low_data", "low_data_plus_synthetic")


@dataclass
class Arm:
    """One training set: `real_count` real images (all, or a stratified subset) and
    `synthetic_count` generated ones."""

    name: str
    description: str
    real_count: int
    synthetic_count: int
    low_data: bool = False


def as_list(value: Any) -> list:
    """A list from the command line's value: arms=real means arms=[real]."""
    return list(value) if isinstance(value, ListConfig | list | tuple) else [value]


def check_arms(cfg: DictConfig) -> list[str]:
    arms = as_list(cfg.get("arms"))
    if not arms or any(arm not in ARMS for arm in arms):
        raise ConfigError(f"arms={arms!r}: each arm must be one of {list(ARMS)} (at least one)")
    if len(set(arms)) != len(arms):
        raise ConfigError(f"arms={arms} names an arm twice; accepted: {list(ARMS)}")
    return arms


def check_ratios(cfg: DictConfig) -> list[float]:
    ratios = as_list(cfg.get("ratios"))
    valid = bool(ratios) and all(
        isinstance(r, int | float) and not isinstance(r, bool) and r > 0 for r in ratios
    )
    if not valid or len(set(ratios)) != len(ratios):
        raise ConfigError(
            f"ratios={ratios!r} must be a list of distinct numbers > 0 (generated images per "
            "real image in the real_plus_synthetic arms), e.g. ratios=[0.5,1,2]"
        )
    return [float(r) for r in ratios]


def check_seeds(cfg: DictConfig) -> list[int]:
    seeds = as_list(cfg.get("seeds"))
    valid = bool(seeds) and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    )
    if not valid or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"seeds={seeds!r} must be a list of distinct integers >= 0, e.g. seeds=[0,1,2]"
        )
    return seeds


def check_fraction(cfg: DictConfig) -> float:
    fraction = cfg.get("low_data_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ConfigError(
            f"low_data_fraction={fraction!r} must be a number between 0 and 1 (exclusive): the "
            "share of the real training images the low_data arms keep, e.g. 0.1"
        )
    return float(fraction)


def plan_arms(names: list[str], ratios: list[float], real_count: int, low_count: int) -> list[Arm]:
    arms = []
    for name in names:
        if name == "real":
            arms.append(Arm("real", "all real training images", real_count, 0))
        elif name == "synthetic":
            arms.append(Arm("synthetic", "generated only, as many as real (CAS)", 0, real_count))
        elif name == "real_plus_synthetic":
            for ratio in ratios:
                arms.append(
                    Arm(
                        f"real_plus_synthetic_x{ratio:g}",
                        f"all real + {ratio:g}x as many generated",
                        real_count,
                        round(ratio * real_count),
                    )
                )
        elif name == "low_data":
            arms.append(Arm("low_data", "the low-data subset of real alone", low_count, 0, True))
        else:
            arms.append(
                Arm(
                    "low_data_plus_synthetic",
                    "the low-data subset + generated, up to the full real count",
                    low_count,
                    real_count - low_count,
                    True,
                )
            )
    return arms


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of `fraction` of each class (at least one image each), drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        count = max(1, round(fraction * len(members)))
        kept.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(kept).sort().values


def augment(cfg: DictConfig) -> dict[str, Any]:
    arm_names, ratios, seeds = check_arms(cfg), check_ratios(cfg), check_seeds(cfg)
    fraction = check_fraction(cfg)
    recipe = ClassifierRecipe(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width
    )
    sample_batch = positive_int(cfg, "sample_batch_size")
    ckpt_path = existing_checkpoint(cfg.ckpt_path)
    out = Path(str(cfg.out)) if cfg.out is not None else ckpt_path.with_suffix(".augment.json")
    if out.suffix != ".json":
        raise ConfigError(f"out={str(out)!r} must end in .json (or leave out=null)")
    ckpt = read_checkpoint(ckpt_path)
    model, run_config = model_from_checkpoint(ckpt, pick_device(str(cfg.device)))
    require_conditional(model, COMMAND)
    truncation = _truncation(cfg.get("truncation"), model)
    datamodule = build_data(cfg, run_config, model)
    test_split = heldout_split(datamodule)
    real = labelled_split(datamodule, datamodule.train_split)
    test = labelled_split(datamodule, test_split)
    low_count = len(stratified_subset(real.labels, fraction, seeds[0]))
    arms = plan_arms(arm_names, ratios, len(real), low_count)
    steps = recipe.steps(len(real))
    log.info(
        "%s: %d arms x %d seeds, %d classifier steps each, on %s (%d real training images, "
        "tested on %d of the %s split)",
        ckpt_path,
        len(arms),
        len(seeds),
        steps,
        getattr(datamodule, "name", "the data"),
        len(real),
        len(test),
        test_split,
    )
    start = time.perf_counter()
    accuracies: dict[str, list[float]] = {arm.name: [] for arm in arms}
    most_generated = max((arm.synthetic_count for arm in arms), default=0)
    use_ema = bool(cfg.use_ema)
    for seed in seeds:
        # One pool per seed (latent i from (seed, i), label i % classes): each arm takes its
        # first images, so every arm's generated images are balanced over the classes too.
        if most_generated:
            pool = generate(model, most_generated, seed, use_ema, sample_batch, **truncation)
        low = real.take(stratified_subset(real.labels, fraction, seed))
        for arm in arms:
            data = (low if arm.low_data else real).take(slice(0, arm.real_count))
            if arm.synthetic_count:
                data = data + pool.take(slice(0, arm.synthetic_count))
            accuracy = train_and_test(
                data, test, model.num_classes, recipe, steps, seed, model.device
            )
            accuracies[arm.name].append(accuracy)
            log.info("seed %d, %s: accuracy %.4f", seed, arm.name, accuracy)
    record = {
        "checkpoint": str(ckpt_path.resolve()),
        "arms": {
            arm.name: {
                "description": arm.description,
                "real_count": arm.real_count,
                "synthetic_count": arm.synthetic_count,
                **summary(accuracies[arm.name]),
            }
            for arm in arms
        },
        "protocol": protocol(cfg, ckpt, model, datamodule, recipe, real, test, test_split)
        | {"seeds": seeds, "ratios": ratios, "low_data_fraction": fraction},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    print(table(record["arms"], len(test), test_split), flush=True)
    write_json(out, record)
    print(f"wrote the results and their protocol to {out.resolve()}", flush=True)
    return record


def protocol(
    cfg: DictConfig,
    ckpt: dict[str, Any],
    model,
    datamodule,
    recipe: ClassifierRecipe,
    real: LabelledImages,
    test: LabelledImages,
    test_split: str,
) -> dict[str, Any]:
    shape = tuple(real.images.shape[1:])
    uses_ema = bool(cfg.use_ema) and getattr(model, "generator_ema", None) is not None
    return {
        "classifier": recipe.protocol(shape, model.num_classes, len(real)),
        "data": {
            **datamodule.identity(),
            "train_split": datamodule.train_split,
            "train_count": len(real),
            "test_split": test_split,
            "test_count": len(test),
        },
        "generator": "ema" if uses_ema else "raw",
        "truncation": cfg.get("truncation"),
        "model": type(model).__name__,
        "labels": f"generated: balanced, sample i has label i % {model.num_classes}",
        "latents": "per seed s, latent i from (s, i); every arm takes the first images",
        "low_data": "a stratified share of each class, drawn from the seed",
        "std": "sample standard deviation over seeds (n - 1; 0 for one seed)",
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("global_step"),
        "images_seen": ckpt["ganlab"].get("progress", {}).get("images_seen"),
        "command": OmegaConf.to_container(cfg, resolve=True),
    }


def table(arms: dict[str, dict[str, Any]], test_count: int, test_split: str) -> str:
    lines = [
        f"accuracy on the real {test_split} split ({test_count} images), mean ± std over seeds",
        "| arm | real | generated | accuracy |",
        "|---|---|---|---|",
    ]
    for name, arm in arms.items():
        lines.append(
            f"| {name} | {arm['real_count']} | {arm['synthetic_count']} | "
            f"{arm['mean']:.4f} ± {arm['std']:.4f} |"
        )
    return "\n".join(lines)


def write_json(out: Path, record: dict[str, Any]) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
    except OSError as err:
        raise GanlabError(
            f"the table is printed above, but the results could not be written to {out} "
            f"({err.strerror or err}); give another out=PATH.json"
        ) from err


@entry_point(COMMAND, "augment_data", free_keys=("data",))
def main(cfg: DictConfig) -> None:
    augment(cfg)


if __name__ == "__main__":
    main()

"""`ganlab-eval`: score a checkpoint; one JSON object on stdout, then beside the checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganlab.checkpoint import existing_checkpoint, model_from_checkpoint, read_checkpoint
from ganlab.checks import check_arguments
from ganlab.cli import CONFIG_DIR, entry_point
from ganlab.errors import ConfigError, GanlabError
from ganlab.metrics.evaluator import SampleQuality
from ganlab.metrics.translation_eval import TranslationQuality, is_translation_model
from ganlab.sample import pick_device

log = logging.getLogger("ganlab")

EVALUATOR_KEYS = (
    "metrics",
    "num_samples",
    "batch_size",
    "feature_extractor",
    "feature_extractor_weights_path",
    "reference_split",
    "num_reference",
    "seed",
    "use_ema",
    "isc_splits",
    "kid_subsets",
    "kid_subset_size",
    "prc_neighborhood",
    "cache_dir",
    "truncation",
    "standing_stats",
    "cas_epochs",
    "cas_seeds",
)


def build_evaluator(cfg: DictConfig) -> SampleQuality:
    arguments = {key: cfg[key] for key in EVALUATOR_KEYS}
    if isinstance(arguments["metrics"], str):  # metrics=fid means metrics=[fid]
        arguments["metrics"] = [arguments["metrics"]]
    check_arguments(SampleQuality, arguments)
    return SampleQuality(**arguments)


TRANSLATION_KEYS = (
    "metrics",
    "num_samples",
    "batch_size",
    "split",
    "seed",
    "use_ema",
    "lpips_net",
    "lpips_weights_path",
    "feature_extractor",
    "feature_extractor_weights_path",
)


def build_translation_evaluator(cfg: DictConfig) -> TranslationQuality:
    arguments = {key: cfg.get(key) for key in TRANSLATION_KEYS}
    if isinstance(arguments["metrics"], str):
        arguments["metrics"] = [arguments["metrics"]]
    check_arguments(TranslationQuality, arguments)
    return TranslationQuality(**arguments)


# Options that only one kind of model reads; set for the other kind, they are refused rather
# than silently ignored.
SAMPLING_ONLY = ("reference_split", "num_reference", "isc_splits", "kid_subsets", "kid_subset_size")
SAMPLING_ONLY += ("prc_neighborhood", "truncation", "standing_stats")
SAMPLING_ONLY += ("cas_epochs", "cas_seeds")
TRANSLATION_ONLY = ("split", "lpips_net", "lpips_weights_path")


def refuse_inapplicable_options(cfg: DictConfig, model: Any, translation: bool) -> None:
    defaults = OmegaConf.load(Path(CONFIG_DIR) / "eval.yaml")
    keys = SAMPLING_ONLY if translation else TRANSLATION_ONLY
    changed = [f"{key}={cfg.get(key)}" for key in keys if cfg.get(key) != defaults.get(key)]
    if not changed:
        return
    if translation:
        why = (
            "translates images and is scored against its data's paired targets (choose them "
            "with split=...), not against a reference set of real samples"
        )
    else:
        why = "samples from latents; split, lpips_net and lpips_weights_path apply to translation"
        why += " models"
    raise ConfigError(f"{' '.join(changed)}: {type(model).__name__} {why}; leave it unset")


def build_data(cfg: DictConfig, run_config: DictConfig, model) -> Any:
    """The run's datamodule with the command line's `data.*` overrides, refused when they change
    the shape of the data (the scores would compare against another reference)."""
    overrides = OmegaConf.to_container(cfg.get("data") or OmegaConf.create({}))
    datamodule = instantiate(OmegaConf.merge(run_config.data, overrides))
    if is_translation_model(model):  # channels and scale must fit; any size the network takes
        model.check_data_compatibility(datamodule)
        return datamodule
    produced = tuple(model.sample(1, seed=0).shape[1:])
    expected = tuple(getattr(datamodule, "sample_shape", produced))
    if produced != expected:
        given = " ".join(f"data.{key}={value}" for key, value in overrides.items())
        raise ConfigError(
            f"{given or 'the data config'}: the checkpoint's generator makes samples of shape "
            f"{produced}, but this data has shape {expected}; scored against data of another "
            "resolution or channels, it would be compared with the wrong reference. Override "
            f"only where the data lives (e.g. data.root=/datasets) or settings that keep the "
            f"shape {produced}"
        )
    return datamodule


def selection_rule(ckpt_path: Path, run_config: DictConfig) -> str:
    """How the scored checkpoint was chosen: "last", "best by <metric> (<mode>)" from the run's
    checkpoint callback that writes this file name, else the file as given."""
    callbacks = OmegaConf.select(run_config, "callbacks") if run_config is not None else None
    for callback in (callbacks or {}).values():
        writes_it = isinstance(callback, DictConfig) and "ModelCheckpoint" in str(
            callback.get("_target_", "")
        )
        if writes_it and f"{callback.get('filename')}.ckpt" == ckpt_path.name:
            monitor = callback.get("monitor")
            if monitor is None:
                return "last"
            return f"best by {monitor} ({callback.get('mode', 'min')})"
    return f"the given file {ckpt_path.name} (not a checkpoint callback's last or best)"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = existing_checkpoint(cfg.ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    model, run_config = model_from_checkpoint(ckpt, pick_device(str(cfg.device)))
    translation = is_translation_model(model)
    refuse_inapplicable_options(cfg, model, translation)
    evaluator = build_translation_evaluator(cfg) if translation else build_evaluator(cfg)
    datamodule = build_data(cfg, run_config, model)
    metrics = evaluator.resolve_metrics(datamodule)  # a bad metric name fails before any work
    if translation:
        log.info(
            "scoring %s: %s of the translated %s split of %s",
            ckpt_path,
            ", ".join(metrics),
            evaluator.split_of(datamodule),
            getattr(datamodule, "name", "the data"),
        )
    else:
        evaluator.check_model(model, datamodule)  # before the plan reads the held-out split
        log.info("scoring %s: %s", ckpt_path, evaluator.plan(datamodule))
    context = {
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("global_step"),
        "images_seen": ckpt["ganlab"].get("progress", {}).get("images_seen"),
        "selection": selection_rule(ckpt_path, run_config),
    }
    result = evaluator.evaluate(model, datamodule, context=context)
    record = {"checkpoint": str(ckpt_path.resolve()), **result.record()}
    text = json.dumps(record, indent=2)
    # Printed before it is written: a file that cannot be written never costs the scores.
    print(text, flush=True)
    out = ckpt_path.with_suffix(".eval.json")
    try:
        out.write_text(text + "\n")
    except OSError as err:
        raise GanlabError(
            f"the scores are printed above, but they could not be written to {out} "
            f"({err.strerror or err}); remove or rename what is in the way, or keep the "
            "printed JSON (ganlab-eval ... > scores.json)"
        ) from err
    log.info("wrote the scores to %s", out.resolve())
    return record


@entry_point("ganlab-eval", "eval", free_keys=("data",))
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()

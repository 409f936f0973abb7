"""`ganlab-eval`: score a checkpoint; one JSON object on stdout and beside the checkpoint."""

from __future__ import annotations

import json
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganlab.checkpoint import existing_checkpoint, model_from_checkpoint, read_checkpoint
from ganlab.cli import CONFIG_DIR, user_errors
from ganlab.metrics.evaluator import SampleQuality
from ganlab.sample import pick_device

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
    "cache_dir",
)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = existing_checkpoint(cfg.ckpt_path)
    evaluator = SampleQuality(**{key: cfg[key] for key in EVALUATOR_KEYS})
    ckpt = read_checkpoint(ckpt_path)
    model, run_config = model_from_checkpoint(ckpt, pick_device(str(cfg.device)))
    data_config = OmegaConf.merge(run_config.data, cfg.get("data") or {})
    datamodule = instantiate(data_config)
    evaluator.resolve_metrics(datamodule)  # a bad metric name fails before any work
    context = {
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("global_step"),
        "images_seen": ckpt["ganlab"].get("progress", {}).get("images_seen"),
        "selection": ckpt_path.name,
    }
    result = evaluator.evaluate(model, datamodule, context=context)
    record = {"checkpoint": str(ckpt_path.resolve()), **result.record()}
    out = ckpt_path.with_suffix(".eval.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors("ganlab-eval"):
        evaluate(cfg)


if __name__ == "__main__":
    main()

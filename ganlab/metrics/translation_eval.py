"""Scoring an image-to-image model on its data's held-out split, with the protocol.

Every item of the split (its `source`, and `mask` where the data has holes) is translated in
order, without jitter, and compared with its `target`: PSNR and SSIM (and, for super-resolution,
on the Y channel with a border crop equal to the scale), hole L1/PSNR for inpainting, LPIPS when
its backbone weights are present, FID of the outputs against the split's targets when asked.
Unpaired data without matching test files (real horse2zebra) has no targets: only FID then.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ganlab.errors import ConfigError
from ganlab.metrics.evaluator import Evaluation, Processes
from ganlab.metrics.fidelity import FeatureExtractor, scores_from_features
from ganlab.metrics.translation import TranslationScores, load_lpips
from ganlab.utils.progress import progress

log = logging.getLogger("ganlab")

TRANSLATION_METRICS = ("psnr", "ssim", "l1_hole", "psnr_hole", "lpips", "fid")
HOLE_METRICS = ("l1_hole", "psnr_hole")
PAIRED_METRICS = ("psnr", "ssim", "l1_hole", "psnr_hole", "lpips")  # need targets
# The score keys each metric name brings (SR adds the Y channel to psnr and ssim).
METRIC_KEYS = {"psnr": ("psnr", "psnr_y"), "ssim": ("ssim", "ssim_y")}
DATA_PROTOCOL_FILE = "PROTOCOL.json"  # what a synthetic set was made with (kernel, noise, masks)


def is_translation_model(model) -> bool:
    return getattr(model, "input_kind", "latent") == "image"


def data_protocol(datamodule) -> dict[str, Any] | None:
    """The contents of PROTOCOL.json at the data's root (the synthetic photo sets write one). A
    loader that reads subfolders (SR: train/HR, test/...) finds it up to two folders above them."""
    roots = [getattr(datamodule, "root", None)]
    roots += [root for root, _ in getattr(datamodule, "sources", [])]
    folders = [Path(str(r)) for r in roots if r is not None]
    candidates = dict.fromkeys(f / DATA_PROTOCOL_FILE for r in folders for f in (r, *r.parents[:2]))
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"{path} cannot be read as JSON ({err}); it records how the data were made "
                    "and is copied into every score's protocol: restore it, or delete the data "
                    "folder so that it is written again"
                ) from err
    return None


class TranslationQuality:
    """Scores a translation model on `datamodule.eval_split` (or `split`)."""

    def __init__(
        self,
        metrics: Sequence[str] | None = None,  # None: psnr, ssim (+ hole scores, + lpips)
        num_samples: int | None = None,  # the first N items of the split; None: all of them
        batch_size: int = 16,
        split: str | None = None,  # None: the data's eval split
        seed: int = 0,  # dropout at test_mode "train" draws from this seed
        use_ema: bool = True,
        lpips_net: str = "alex",
        lpips_weights_path: str | None = None,
        lpips_by_default: bool = True,  # metrics=None includes lpips when its weights are here
        feature_extractor: str | None = None,  # FID's; None: the data's default
        feature_extractor_weights_path: str | None = None,
    ):
        if num_samples is not None and num_samples < 1:
            raise ConfigError(f"num_samples={num_samples} must be at least 1 (or null: all)")
        self.metrics = list(metrics) if metrics is not None else None
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.split = split
        self.seed = seed
        self.use_ema = use_ema
        self.lpips_net = lpips_net
        self.lpips_weights_path = lpips_weights_path
        self.lpips_by_default = lpips_by_default
        self.feature_extractor = feature_extractor
        self.feature_extractor_weights_path = feature_extractor_weights_path
        self._lpips: dict[str, Any] = {}  # loaded once: one warning when weights are missing
        self._extractors: dict[tuple[str, str], FeatureExtractor] = {}

    # ------------------------------------------------------------------ configuration
    def split_of(self, datamodule) -> str:
        return self.split or getattr(datamodule, "eval_split", "test")

    def has_targets(self, datamodule) -> bool:
        """Unpaired test sets hold paired targets only when every testA file has a testB twin."""
        if getattr(datamodule, "task", "paired") != "unpaired":
            return True
        dataset = datamodule.real_dataset(self.split_of(datamodule))
        return len(dataset) > 0 and "target" in dataset[0]

    def resolve_metrics(self, datamodule) -> list[str]:
        task = getattr(datamodule, "task", "paired")
        name = getattr(datamodule, "name", "this data")
        targets = self.has_targets(datamodule)
        if self.metrics is None:
            if not targets:
                return ["fid"]
            holes = list(HOLE_METRICS) if task == "inpainting" else []
            return ["psnr", "ssim", *holes, *(["lpips"] if self.lpips_by_default else [])]
        unknown = [m for m in self.metrics if m not in TRANSLATION_METRICS]
        if unknown or not self.metrics:
            raise ConfigError(
                f"metrics={self.metrics} has {unknown or 'no metric'}: for a translation model "
                f"the accepted metrics are {list(TRANSLATION_METRICS)} (hole scores for "
                "inpainting data only)"
            )
        holes = [m for m in self.metrics if m in HOLE_METRICS]
        if holes and task != "inpainting":
            raise ConfigError(
                f"metrics={self.metrics}: {holes} score the filled hole and need inpainting "
                f"data; {name} is task {task!r}"
            )
        paired = [m for m in self.metrics if m in PAIRED_METRICS]
        if paired and not targets:
            raise ConfigError(
                f"metrics={self.metrics}: {paired} compare each output with its target, but the "
                f"{self.split_of(datamodule)} split of {name} has no paired targets (testB files "
                "named as the testA ones); score it with metrics=[fid]"
            )
        return list(self.metrics)

    def lpips(self, explicit: bool):
        """The LPIPS metric, or None (with one warning) when its weights are missing and it was
        not asked for by name."""
        key = "explicit" if explicit else "default"
        if key in self._lpips:
            return self._lpips[key]
        hint = "or set lpips_weights_path=/path/to/that/file"
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = load_lpips(
                    self.lpips_net, self.lpips_weights_path, "error" if explicit else "skip"
                )
        except ConfigError as err:
            raise ConfigError(f"metrics=[lpips]: {err} ({hint})") from err
        for warning in caught:  # one line in the log instead of a Python warning's two
            log.warning("%s (%s); metrics=[lpips] makes this an error", warning.message, hint)
        self._lpips[key] = loaded
        return loaded

    def extractor(self, datamodule, device: torch.device) -> FeatureExtractor:
        name = self.feature_extractor or datamodule.default_feature_extractor
        key = (name, str(device))
        if key not in self._extractors:
            self._extractors[key] = FeatureExtractor(
                name, ["fid"], self.feature_extractor_weights_path, device
            )
        return self._extractors[key]

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        model,
        datamodule,
        processes: Processes | None = None,
        context: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Scores on rank 0, shared with every rank (the same numbers on each)."""
        processes = processes or Processes()
        outcome = None
        if processes.rank == 0:
            outcome = self._evaluate(model, datamodule)
        scores, protocol = processes.broadcast(outcome)
        protocol = {**protocol, "world_size": processes.world_size, **(context or {})}
        return Evaluation(scores, protocol)

    def _evaluate(self, model, datamodule) -> tuple[dict[str, float], dict[str, Any]]:
        requested = self.resolve_metrics(datamodule)
        task = getattr(datamodule, "task", "paired")
        split = self.split_of(datamodule)
        dataset = datamodule.real_dataset(split)
        count = len(dataset) if self.num_samples is None else min(self.num_samples, len(dataset))
        if count == 0:
            raise ConfigError(f"the {split} split of {datamodule.name} has no items to score")
        lpips = self.lpips(explicit=self.metrics is not None) if "lpips" in requested else None
        skipped = "lpips" in requested and lpips is None
        metrics = [m for m in requested if not (skipped and m == "lpips")]
        targets = self.has_targets(datamodule)
        scores_module, outputs, references = self._translate(
            model, datamodule, split, count, metrics, lpips, targets
        )
        scores = self._kept(scores_module.compute(), metrics) if scores_module else {}
        protocol: dict[str, Any] = {
            "metrics": metrics,
            "task": task,
            **(scores_module.protocol() if scores_module else {}),
            "split": split,
            "count": count,
            "test_mode": getattr(model, "test_mode", "eval"),
            "use_ema": self.use_ema,
            "generator": "ema" if self._uses_ema(model) else "raw",
            "seed": self.seed,
            "data": datamodule.identity(),
            "data_protocol": data_protocol(datamodule),
        }
        if scores_module and tuple(getattr(datamodule, "sample_shape", (3,)))[0] == 1:
            protocol["channel"] = "gray, repeated to RGB for the scores"
        if skipped:
            protocol["lpips"] = "skipped: the LPIPS backbone weights are not on this machine"
        if "fid" in metrics:
            scores["fid"], protocol["fid"] = self._fid(datamodule, model, outputs, references)
            protocol["fid"]["reference"] = (
                "the same items' targets" if targets else "the split's domain-B images"
            )
        return scores, protocol

    def _translate(self, model, datamodule, split, count, metrics, lpips, targets):
        """Translate the first `count` items; returns the paired scores accumulated over them
        (None when no paired metric is asked) and, for FID, the outputs and their references."""
        task = getattr(datamodule, "task", "paired")
        paired = targets and any(m in PAIRED_METRICS for m in metrics)
        scores = None
        outputs, references = [], []
        # dropout at test_mode "train" is drawn from `seed`: the same scores on every call
        with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            for batch in progress(self._batches(datamodule.real_dataset(split), count), split):
                source = batch.get("source", batch.get("a"))
                output = model.translate(
                    source, batch.get("mask"), use_ema=self.use_ema, batch_size=len(source)
                ).cpu()
                if paired:
                    target = batch["target"]
                    if output.shape != target.shape:
                        raise ConfigError(
                            f"the model translates {split} sources of shape "
                            f"{tuple(source.shape[1:])} to {tuple(output.shape[1:])}, but the "
                            f"targets have shape {tuple(target.shape[1:])}"
                        )
                    if scores is None:
                        scores = TranslationScores(
                            crop=sr_scale(datamodule, source, target) if task == "sr" else 0,
                            y_channel=task == "sr",
                            holes=task == "inpainting",
                            lpips=lpips,
                        )
                    mask = batch.get("mask") if task == "inpainting" else None
                    scores.update(as_rgb(output), as_rgb(target), mask)
                if "fid" in metrics:
                    outputs.append(output)
                    references.append(batch["target"] if targets else batch["b"])
        return scores, outputs, references

    @staticmethod
    def _kept(computed: dict[str, float], metrics: Sequence[str]) -> dict[str, float]:
        keys = {key for m in metrics for key in METRIC_KEYS.get(m, (m,))}
        return {key: value for key, value in computed.items() if key in keys}

    def _uses_ema(self, model) -> bool:
        return self.use_ema and getattr(model, "generator_ema", None) is not None

    def _batches(self, dataset, count: int) -> Iterator[dict[str, torch.Tensor]]:
        """Items in order, stacked up to `batch_size` while their shapes agree (eval images of
        a folder may differ in size)."""
        pending: list[dict[str, torch.Tensor]] = []
        for index in range(count):
            item = dataset[index]
            shapes = {key: tuple(value.shape) for key, value in item.items()}
            if pending and (
                len(pending) == self.batch_size
                or shapes != {key: tuple(value.shape) for key, value in pending[0].items()}
            ):
                yield {key: torch.stack([p[key] for p in pending]) for key in pending[0]}
                pending = []
            pending.append(item)
        if pending:
            yield {key: torch.stack([p[key] for p in pending]) for key in pending[0]}

    def _fid(self, datamodule, model, outputs, references) -> tuple[float, dict[str, Any]]:
        if sum(len(o) for o in outputs) < 2:
            raise ConfigError("FID needs at least 2 translated items; raise num_samples")
        extractor = self.extractor(datamodule, model.device)
        generated = extractor.extract(outputs)
        reference = extractor.extract(references)
        value = scores_from_features(["fid"], extractor.layers, generated, reference)["fid"]
        return value, {
            "feature_extractor": extractor.name,
            "feature_extractor_weights": extractor.weights_id,
            "resize": extractor.resize_protocol,
            "input": "uint8 RGB, quantized as a PNG save; gray repeated to 3 channels",
        }


def sr_scale(datamodule, source: torch.Tensor, target: torch.Tensor) -> int:
    """The upscaling factor of super-resolution data: the border its scores crop."""
    return int(getattr(datamodule, "scale", None) or target.shape[-1] // source.shape[-1])


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Scores take RGB; gray images repeat their channel (PSNR and SSIM are then the gray's)."""
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images

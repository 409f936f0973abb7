"""Sample-quality evaluation with its protocol, the same in one process and across many.

Each process generates a contiguous share of the sample indices (latent i depends only on the
seed and i), extracts features, and the features are gathered. Rank 0 computes the scores,
reading the real data's features from the reference cache, and broadcasts them, so every rank
logs the same number and the number does not depend on the world size.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from ganlab.data.base import collate_batch
from ganlab.errors import ConfigError
from ganlab.metrics.cas import (
    CAS,
    ClassifierRecipe,
    cas_generated_count,
    classification_accuracy_score,
    heldout_split,
    require_conditional,
)
from ganlab.metrics.extractors import cache_dir as default_cache_dir
from ganlab.metrics.fidelity import IMAGE_METRICS, FeatureExtractor, scores_from_features
from ganlab.metrics.modes import mode_coverage
from ganlab.metrics.reference import ReferenceCache, protocol_key
from ganlab.utils.progress import progress
from ganlab.utils.standing_stats import check_standing_stats, sampling_statistics_

log = logging.getLogger("ganlab")

POINT_METRICS = ("modes",)
# PacGAN's protocol for 2D mixtures; for images, a CPU-affordable default (set 50000 for papers).
DEFAULT_NUM_SAMPLES = {"image": 5000, "point": 2500}


def takes_truncation(model) -> bool:
    return "truncation" in inspect.signature(model.sample).parameters


def check_truncation_support(model, truncation: float | None) -> None:
    if truncation is not None and not takes_truncation(model):
        raise ConfigError(
            f"truncation={truncation} was given, but the checkpoint's model "
            f"({type(model).__name__}) has no truncation; leave truncation=null (it applies to "
            "model=stylegan2 and model=biggan)"
        )


def truncation_protocol(model, truncation: float | None) -> str | None:
    """What truncation the samples were drawn with: BigGAN's resampling threshold, StyleGAN2's
    psi (a model's own default when `truncation` is None), or None for none."""
    if hasattr(model, "truncation_protocol"):
        return model.truncation_protocol(truncation)
    psi = truncation if truncation is not None else getattr(model, "truncation_psi", None)
    if psi is None or psi == 1:
        return None
    return f"psi {float(psi)}: w = w_avg + psi (w - w_avg)"


@dataclass
class Processes:
    """How this process sees the others: nothing to do for one process."""

    rank: int = 0
    world_size: int = 1
    all_gather: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda t: t.unsqueeze(0))
    broadcast: Callable[[Any], Any] = field(default=lambda obj: obj)

    @classmethod
    def of_trainer(cls, trainer, device: torch.device) -> Processes:
        if trainer.world_size == 1:
            return cls()

        def gather(tensor: torch.Tensor) -> torch.Tensor:
            # NCCL gathers device tensors; gloo gathers CPU ones.
            return trainer.strategy.all_gather(tensor.to(device)).cpu()

        return cls(trainer.global_rank, trainer.world_size, gather, trainer.strategy.broadcast)

    def share(self, count: int) -> tuple[int, int, int]:
        """(start, stop, padded size) of this process's contiguous slice of `count` indices."""
        per_rank = math.ceil(count / self.world_size)
        start = min(count, self.rank * per_rank)
        return start, min(count, start + per_rank), per_rank

    def gather_rows(self, rows: torch.Tensor, count: int, per_rank: int) -> torch.Tensor:
        """Every process's rows, in index order, padding removed."""
        padded = torch.zeros(per_rank, *rows.shape[1:], dtype=rows.dtype)
        padded[: len(rows)] = rows
        return self.all_gather(padded).reshape(-1, *rows.shape[1:])[:count]


@dataclass
class Evaluation:
    scores: dict[str, float]
    protocol: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {"scores": self.scores, "protocol": self.protocol}


class SampleQuality:
    """Scores a generator against its data: FID/IS/KID/PR for images, mode coverage for 2D."""

    def __init__(
        self,
        metrics: Sequence[str] | None = None,  # None: fid, is, kid, prc (images); modes (2D)
        num_samples: int | None = None,  # generated samples; None: 5000 images, 2500 2D points
        batch_size: int = 250,
        feature_extractor: str | None = None,  # None: the datamodule's default
        feature_extractor_weights_path: str | None = None,  # for machines without internet
        reference_split: str = "train",
        num_reference: int | None = None,  # real samples; None: the whole split
        seed: int = 0,  # latents of sample i come from (seed, i)
        use_ema: bool = True,
        isc_splits: int = 10,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        prc_neighborhood: int = 3,
        cache_dir: str | None = None,  # None: $GANLAB_CACHE_DIR or ~/.cache/ganlab
        truncation: float | None = None,  # passed to `model.sample` (StyleGAN2 psi, BigGAN t)
        standing_stats: int | None = None,  # BatchNorm statistics over this many batches first
        cas_epochs: int = 10,  # metrics=[cas]: the classifier's epochs (ganlab.metrics.cas)
        cas_seeds: int = 1,  # metrics=[cas]: classifiers (seeds seed, seed + 1, ...), averaged
    ):
        for name, value in (("num_samples", num_samples), ("num_reference", num_reference)):
            if value is not None and value < 2:
                raise ConfigError(f"{name}={value} must be at least 2 (or null for the default)")
        self.metrics = list(metrics) if metrics is not None else None
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.feature_extractor = feature_extractor
        self.weights_path = feature_extractor_weights_path
        self.reference_split = reference_split
        self.num_reference = num_reference
        self.seed = seed
        self.use_ema = use_ema
        self.isc_splits = isc_splits
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.prc_neighborhood = prc_neighborhood
        self.truncation = truncation
        self.standing_stats = check_standing_stats(standing_stats)
        self.cas_recipe = ClassifierRecipe(epochs=cas_epochs)
        if isinstance(cas_seeds, bool) or not isinstance(cas_seeds, int) or cas_seeds < 1:
            raise ConfigError(f"cas_seeds={cas_seeds!r} must be a positive integer")
        self.cas_seeds = cas_seeds
        self.cache = ReferenceCache(cache_dir or default_cache_dir())
        self._extractors: dict[tuple[str, str], FeatureExtractor] = {}
        self.last_reference_computed = False  # whether the last evaluation extracted real data

    # ------------------------------------------------------------------ configuration
    def kind(self, datamodule) -> str:
        return "point" if getattr(datamodule, "data_key", "image") == "point" else "image"

    def resolve_metrics(self, datamodule) -> list[str]:
        kind = self.kind(datamodule)
        accepted = POINT_METRICS if kind == "point" else (*IMAGE_METRICS, CAS)
        # CAS trains classifiers: only when asked
        metrics = self.metrics if self.metrics is not None else [m for m in accepted if m != CAS]
        unknown = [m for m in metrics if m not in accepted]
        if unknown or not metrics:
            raise ConfigError(
                f"metrics={metrics} has {unknown or 'no metric'}: for "
                f"{getattr(datamodule, 'name', 'this data')} ({kind} data) the accepted metrics "
                f"are {list(accepted)}"
            )
        return metrics

    def check_model(self, model, datamodule) -> None:
        """CAS needs a conditional generator and labelled data with a held-out split."""
        if CAS in self.resolve_metrics(datamodule):
            require_conditional(model, "metrics=[cas]")
            heldout_split(datamodule)

    def extractor_name(self, datamodule) -> str:
        return self.feature_extractor or datamodule.default_feature_extractor

    def plan(self, datamodule) -> str:
        """What `evaluate` generates and what it compares it with, for the log."""
        metrics = self.resolve_metrics(datamodule)
        name = getattr(datamodule, "name", "the data")
        parts = []
        fidelity = [m for m in metrics if m != CAS]
        if fidelity:
            count = self.num_samples or DEFAULT_NUM_SAMPLES[self.kind(datamodule)]
            parts.append(
                f"{', '.join(fidelity)} of {count} generated samples against the "
                f"{self.reference_split} split of {name}"
            )
        if CAS in metrics:
            one = self.cas_seeds == 1
            classifiers = "a classifier" if one else f"{self.cas_seeds} classifiers"
            epochs = self.cas_recipe.epochs
            parts.append(
                f"cas: {classifiers} trained on {cas_generated_count(datamodule)} generated "
                f"samples{'' if one else ' each'} (balanced labels, {epochs} "
                f"epoch{'' if epochs == 1 else 's'}), tested on the {heldout_split(datamodule)} "
                f"split of {name}"
            )
        return "; ".join(parts)

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        model,
        datamodule,
        processes: Processes | None = None,
        context: dict[str, Any] | None = None,
    ) -> Evaluation:
        processes = processes or Processes()
        metrics = self.resolve_metrics(datamodule)
        self.check_model(model, datamodule)
        kind = self.kind(datamodule)
        count = self.num_samples or DEFAULT_NUM_SAMPLES[kind]
        check_truncation_support(model, self.truncation)
        restore = self._standing_statistics(model)
        try:
            if kind == "point":
                scores, details = self._evaluate_points(model, datamodule, processes, count)
            else:
                fidelity = [m for m in metrics if m != CAS]
                scores, details = ({}, {})
                if fidelity:
                    scores, details = self._evaluate_images(
                        model, datamodule, processes, count, fidelity
                    )
                if CAS in metrics:
                    cas_scores, details[CAS] = self._evaluate_cas(model, datamodule, processes)
                    scores = {**scores, **cas_scores}
        finally:
            restore()  # a training run's generator keeps its own statistics
        latents = {"seed": self.seed, "indices": [0, count]}
        if metrics == [CAS]:  # only the classifiers' training images were generated
            cas = details[CAS]
            count = cas["generated_count"]
            latents = {"seeds": cas["latent_seeds"], "indices": [0, count]}
        protocol = {
            "metrics": metrics,
            "num_generated": count,  # with cas alone: per classifier (cas.generated_count)
            "latents": latents,
            "generator": "ema" if self._uses_ema(model) else "raw",
            "batchnorm_at_sampling": self._batchnorm_protocol(model),
            "truncation": truncation_protocol(model, self.truncation),
            "labels": self._label_protocol(model),
            "world_size": processes.world_size,
            # TF32 in float32 matmuls/convolutions changes features slightly on GPUs that have it.
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            **details,
            **(context or {}),
        }
        return Evaluation(scores, protocol)

    @staticmethod
    def _label_protocol(model) -> str | None:
        """How a conditional model's samples were labelled (`sample_labels`); None otherwise."""
        if not getattr(model, "conditional", False):
            return None
        return f"sample i has label i % {model.num_classes} (balanced classes)"

    def _uses_ema(self, model) -> bool:
        return self.use_ema and getattr(model, "generator_ema", None) is not None

    def _standing_statistics(self, model) -> Callable[[], None]:
        """Standing statistics when asked (a restore function); the seed fixes their latents."""
        if self.standing_stats is None:
            return lambda: None
        return sampling_statistics_(
            model, self.standing_stats, self.batch_size, self.use_ema, self.seed
        )

    def _batchnorm_protocol(self, model) -> str:
        network = model  # a plain module with `sample`; of a GANModule, the sampled generator
        if hasattr(model, "sampling_generator"):
            network = model.sampling_generator(self.use_ema)
        if not any(isinstance(m, _BatchNorm) for m in network.modules()):
            return "none (the generator has no BatchNorm)"
        if self.standing_stats is None:
            return "eval (running statistics from training)"
        labels = " and uniform labels" if getattr(model, "conditional", False) else ""
        return (
            f"eval (standing statistics: {self.standing_stats} batches of {self.batch_size} "
            f"fresh latents{labels}, seed {self.seed})"
        )

    def _generated_batches(self, model, start: int, stop: int) -> Iterator[torch.Tensor]:
        starts = range(start, stop, self.batch_size)
        for lo in progress(starts, "generating and extracting"):
            n = min(self.batch_size, stop - lo)
            truncation = {} if self.truncation is None else {"truncation": self.truncation}
            # Left on the model's device: the feature extractor reads them there.
            yield model.sample(n, seed=self.seed, start=lo, use_ema=self.use_ema, **truncation)

    def _evaluate_cas(self, model, datamodule, processes: Processes):
        """Computed by rank 0 (classifiers trained on one process), then broadcast."""
        outcome = None
        if processes.rank == 0:
            truncation = {} if self.truncation is None else {"truncation": self.truncation}
            seeds = [self.seed + i for i in range(self.cas_seeds)]
            outcome = classification_accuracy_score(
                model,
                datamodule,
                seeds,
                self.cas_recipe,
                self.use_ema,
                self.batch_size,
                **truncation,
            )
        return processes.broadcast(outcome)

    def _evaluate_points(self, model, datamodule, processes, count):
        start, stop, per_rank = processes.share(count)
        batches = [b.cpu() for b in self._generated_batches(model, start, stop)]
        mine = torch.cat(batches or [torch.zeros(0, 2)])
        points = processes.gather_rows(mine.double(), count, per_rank)
        scores = (
            mode_coverage(points, datamodule.centers, datamodule.std)
            if processes.rank == 0
            else None
        )
        details = {
            "reference": {**datamodule.identity(), "modes": len(datamodule.centers)},
            "high_quality": "within 3 std of the nearest mode (PacGAN)",
        }
        return processes.broadcast(scores), details

    def extractor(self, name: str, device: torch.device) -> FeatureExtractor:
        key = (name, str(device))
        if key not in self._extractors:
            metrics = list(IMAGE_METRICS)  # one instance serves every metric
            self._extractors[key] = FeatureExtractor(name, metrics, self.weights_path, device)
        return self._extractors[key]

    def _evaluate_images(self, model, datamodule, processes, count, metrics):
        extractor = self.extractor(self.extractor_name(datamodule), model.device)
        start, stop, per_rank = processes.share(count)
        mine = extractor.extract(self._generated_batches(model, start, stop))
        generated = {
            layer: processes.gather_rows(mine.get(layer, torch.zeros(0, 1)), count, per_rank)
            for layer in sorted(set(extractor.layers.values()))
        }
        reference_protocol = self._reference_protocol(datamodule, extractor)
        outcome = None
        if processes.rank == 0:
            reference, self.last_reference_computed = self.cache.get_or_compute(
                reference_protocol, lambda: self._reference_features(datamodule, extractor)
            )
            kid_size = min(self.kid_subset_size, count, len(next(iter(reference.values()))))
            scores = scores_from_features(
                metrics,
                extractor.layers,
                generated,
                reference,
                self.isc_splits,
                self.kid_subsets,
                kid_size,
                self.prc_neighborhood,
            )
            outcome = (scores, len(next(iter(reference.values()))), kid_size)
        scores, num_reference, kid_size = processes.broadcast(outcome)
        details = {
            "feature_extractor": extractor.name,
            "feature_extractor_weights": extractor.weights_id,
            "feature_layers": extractor.layers,
            "resize": extractor.resize_protocol,
            "input": "uint8 RGB, quantized as a PNG save; gray repeated to 3 channels",
            "reference": {
                **reference_protocol["data"],
                "split": self.reference_split,
                "count": num_reference,
                "statistics_key": protocol_key(reference_protocol),
            },
            "isc_splits": self.isc_splits,
            "kid": {"subsets": self.kid_subsets, "subset_size": kid_size},
            "prc_neighborhood": self.prc_neighborhood,
        }
        return scores, details

    def _reference_protocol(self, datamodule, extractor: FeatureExtractor) -> dict[str, Any]:
        return {
            "data": datamodule.identity(),
            "split": self.reference_split,
            "num_reference": self.num_reference,
            "feature_extractor": extractor.name,
            "feature_extractor_weights": extractor.weights_id,
            "layers": sorted(set(extractor.layers.values())),
        }

    def _reference_features(self, datamodule, extractor: FeatureExtractor):
        dataset = datamodule.real_dataset(self.reference_split)
        limit = (
            len(dataset) if self.num_reference is None else min(self.num_reference, len(dataset))
        )
        subset = torch.utils.data.Subset(dataset, range(limit))
        loader = DataLoader(subset, self.batch_size, collate_fn=collate_batch)
        log.info(
            "extracting the features of %d real samples (%s, %s split) once; later evaluations "
            "read them from the cache",
            limit,
            datamodule.name,
            self.reference_split,
        )
        batches = progress(loader, f"reference features of {datamodule.name}")
        return extractor.extract(batch[datamodule.data_key] for batch in batches)

"""The torch-fidelity adapter: its feature extractors, and its metric functions on features.

ganlab extracts features itself (so that generation and extraction can be split across
processes and the real data's features cached), then hands them to torch-fidelity's own
`*_features_to_metric` functions: no FID, IS, KID or precision/recall maths is re-implemented.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from ganlab.errors import ConfigError, GanlabError
from ganlab.metrics.extractors import weights_sha256

IMAGE_METRICS = ("fid", "is", "kid", "prc")
# torch-fidelity's name for each metric's default feature layer
_FIDELITY_NAMES = {"fid": "fid", "is": "isc", "kid": "kid", "prc": "prc"}
DEFAULT_EXTRACTOR = "inception-v3-compat"


class ExtractorUnavailable(GanlabError):
    """The feature extractor's weights cannot be had (no network and no local file)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 RGB, quantized as saving a PNG would; gray is repeated."""
    images = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


class FeatureExtractor:
    """A torch-fidelity feature extractor with the layers that the asked metrics read."""

    def __init__(
        self,
        name: str,
        metrics: Sequence[str],
        weights_path: str | None = None,
        device: torch.device | str = "cpu",
    ):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            raise ConfigError(
                f"feature_extractor={name!r} is not a registered torch-fidelity extractor; "
                f"accepted: {sorted(FEATURE_EXTRACTORS_REGISTRY)}"
            )
        self.name = name
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        self.layers = {
            m: cls.get_default_feature_layer_for_metric(_FIDELITY_NAMES[m]) for m in metrics
        }
        kwargs = {"verbose": False}
        if weights_path is not None:
            kwargs["feature_extractor_weights_path"] = str(weights_path)
        try:
            module = create_feature_extractor(
                name, sorted(set(self.layers.values())), cuda=False, **kwargs
            )
        except (OSError, RuntimeError, ValueError) as err:  # urllib's URLError is an OSError
            raise ExtractorUnavailable(unavailable_message(name, weights_path, err)) from err
        self.module = module.to(device)
        self.device = torch.device(device)
        self.weights_id = getattr(module, "weights_id", None) or weights_sha256(module)
        size = getattr(module, "INPUT_IMAGE_SIZE", None)  # torch-fidelity's Inception: 299
        self.resize_protocol = getattr(module, "resize_protocol", None) or (
            f"bilinear (TensorFlow 1 compatible) to {size}x{size}"
            if size
            else "the extractor's own"
        )

    @torch.no_grad()
    def device_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of [-1, 1] images, per layer, left on the extractor's device."""
        images = images.to(self.device, non_blocking=True)  # generated ones are there already
        outputs = self.module(to_uint8(images))
        return self.module.convert_features_tuple_to_dict(outputs)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of [-1, 1] images, per layer, float64 on the CPU."""
        return {k: v.double().cpu() for k, v in self.device_features(images).items()}

    def extract(self, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features of every batch, float64 on the CPU. They stay on the device until the last
        batch is done: no host sync per batch, so a GPU never waits for the host between them."""
        chunks: dict[str, list[torch.Tensor]] = {}
        for images in batches:
            for layer, feats in self.device_features(images).items():
                chunks.setdefault(layer, []).append(feats)
        return {layer: torch.cat(parts).double().cpu() for layer, parts in chunks.items()}


def unavailable_message(name: str, weights_path: str | None, err: Exception) -> str:
    if weights_path is not None:
        return f"feature_extractor_weights_path={weights_path!r} cannot be loaded for {name}: {err}"
    where = f"{torch.hub.get_dir()}/checkpoints/"
    url = URL_INCEPTION_V3 if name == DEFAULT_EXTRACTOR else "its release page"
    return (
        f"feature extractor {name!r} needs pretrained weights, which could not be downloaded "
        f"({type(err).__name__}: {err}). Download {url} and put the file in {where}, or pass its "
        "path as feature_extractor_weights_path=/path/to/weights.pth"
    )


def scores_from_features(
    metrics: Sequence[str],
    layers: dict[str, str],
    generated: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor] | None,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    rng_seed: int = 2020,
) -> dict[str, float]:
    """FID, IS, KID and precision/recall by torch-fidelity's functions, under ganlab's keys."""
    scores: dict[str, float] = {}
    common = {"verbose": False, "rng_seed": rng_seed}
    if "fid" in metrics:
        stats = [fid_features_to_statistics(f[layers["fid"]]) for f in (generated, reference)]
        scores["fid"] = fid_statistics_to_metric(*stats, verbose=False)[
            "frechet_inception_distance"
        ]
    if "is" in metrics:
        out = isc_features_to_metric(generated[layers["is"]], isc_splits, True, rng_seed)
        scores["is_mean"] = out["inception_score_mean"]
        scores["is_std"] = out["inception_score_std"]
    if "kid" in metrics:
        gen, ref = generated[layers["kid"]], reference[layers["kid"]]
        size = min(kid_subset_size, len(gen), len(ref))
        out = kid_features_to_metric(
            gen, ref, kid_subsets=kid_subsets, kid_subset_size=size, **common
        )
        scores["kid_mean"] = out["kernel_inception_distance_mean"]
        scores["kid_std"] = out["kernel_inception_distance_std"]
    if "prc" in metrics:
        out = prc_features_to_metric(
            generated[layers["prc"]].float(),
            reference[layers["prc"]].float(),
            prc_neighborhood=prc_neighborhood,
            prc_batch_size=10000,
            save_cpu_ram=True,
            **common,
        )
        scores["precision"] = out["precision"]
        scores["recall"] = out["recall"]
    return {key: float(value) for key, value in scores.items()}

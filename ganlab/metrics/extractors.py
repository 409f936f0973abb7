"""Offline feature extractors for torch-fidelity: no Inception weights download needed.

- `ganlab-digits`: a small CNN classifier for 32x32 grayscale digits, trained once on the
  digits' held-out ("test") split and cached, so the GAN's training images are never its own.
- `ganlab-tiny`: a tiny net with fixed-seed random weights, for fast tests.

Both follow torch-fidelity's extractor contract: uint8 (N, C, H, W) in, a tuple of float32
tensors in `features_list` order out. Register them with `register_extractors()`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganlab.data.digits import DigitsDataModule
from ganlab.errors import GanlabError

log = logging.getLogger("ganlab")

DIGITS = "ganlab-digits"
TINY = "ganlab-tiny"
FEATURES = ("features", "logits")
METRIC_LAYERS = {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}
# ITU-R 601 luminance in thousandths, as PIL's RGB->L conversion (and ganlab's datasets) uses:
# integer weights on integer pixels are exact, so gray repeated to RGB maps back to itself.
LUMA_PER_MILLE = (299, 587, 114)

DIGITS_VERSION = 2  # 2: features scaled to unit RMS
DIGITS_TRAIN_SPLIT = "test"  # the GAN trains on "train": the extractor never sees its images
DIGITS_EVAL_SPLIT = "train"
DIGITS_SEED = 0
DIGITS_EPOCHS = 30
DIGITS_BATCH_SIZE = 32


class ExtractorError(GanlabError, ValueError):
    """Bad extractor input or weights; the message names the bad value and what is accepted."""


def cache_dir() -> Path:
    """ganlab's file cache: `$GANLAB_CACHE_DIR`, else `~/.cache/ganlab`."""
    return Path(os.environ.get("GANLAB_CACHE_DIR", "~/.cache/ganlab")).expanduser()


def weights_sha256(module: nn.Module) -> str:
    """First 16 hex chars of a sha256 over the state_dict (names and bytes, in key order)."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def seeded_net(net_cls: type[nn.Module], seed: int) -> nn.Module:
    """`net_cls()` with He-uniform weights and zero biases from a local generator: the same
    weights on every construction and machine, and the global RNG (the GAN's) left untouched."""
    with torch.device("meta"):  # skips PyTorch's default init, which draws from the global RNG
        net = net_cls()
    net = net.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                bound = math.sqrt(6 / layer.weight[0].numel())
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()
        net.feature_scale.fill_(1.0)  # to_empty left it uninitialized
    return net


class DigitsNet(nn.Module):
    """32x32 gray -> 128-d features (post-ReLU, like Inception's pool3) -> 10 logits."""

    resolution = 32

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)
        # Brings the features to unit RMS on the training images, so that KID's polynomial
        # kernel sees inputs of the scale it was designed for (Inception's pool features).
        self.register_buffer("feature_scale", torch.ones(()))


class TinyNet(nn.Module):
    """16x16 gray -> 32-d features -> 10 logits; random weights are enough for tests."""

    resolution = 16

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1),  # 8x8
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),  # 4x4
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 32),
            nn.ReLU(),
        )
        self.head = nn.Linear(32, 10)
        self.register_buffer("feature_scale", torch.ones(()))


def check_images(x: Any) -> None:
    if not torch.is_tensor(x):
        raise ExtractorError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise ExtractorError(
            f"images must have dtype torch.uint8 (values 0..255), got {x.dtype}; "
            "convert [-1, 1] images with ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)"
        )
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ExtractorError(
            f"images must have shape (N, C, H, W) with C 1 or 3, got {tuple(x.shape)}"
        )


def preprocess(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> float (N, 1, resolution, resolution) in [-1, 1], as digits data."""
    check_images(x)
    x = x.float()
    if x.shape[1] == 3:
        r, g, b = (x[:, i : i + 1] * w for i, w in enumerate(LUMA_PER_MILLE))
        x = (r + g + b) / 1000
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    return x / 127.5 - 1


class GanlabExtractor(FeatureExtractorBase):
    """What both extractors share: the contract, input handling and the forward pass."""

    net: DigitsNet | TinyNet

    def _finish(self, net: DigitsNet | TinyNet) -> None:
        self.net = net
        self.requires_grad_(False)
        self.eval()
        self.weights_id = weights_sha256(net)
        res = net.resolution
        self.resize_protocol = f"bilinear with antialiasing to {res}x{res}, RGB to gray (ITU-R 601)"

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        if metric not in METRIC_LAYERS:
            names = ", ".join(repr(m) for m in METRIC_LAYERS)
            raise ExtractorError(
                f"metric={metric!r} has no default feature layer; accepted: {names}"
            )
        return METRIC_LAYERS[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False  # too small for compilation to pay off

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.net.body(preprocess(x, self.net.resolution))
        out = {"features": features * self.net.feature_scale}
        if "logits" in self.features_list:
            out["logits"] = self.net.head(features)
        return tuple(out[name].float() for name in self.features_list)


class TinyExtractor(GanlabExtractor):
    """`ganlab-tiny`: fixed-seed random weights, no training, no files."""

    def __init__(
        self,
        name: str,
        features_list: list[str] | tuple[str, ...],
        feature_extractor_weights_path: str | None = None,
        **kwargs: Any,  # the rest of torch-fidelity's options; none apply here
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is not None:
            raise ExtractorError(
                f"{name} has fixed random weights; feature_extractor_weights_path="
                f"{feature_extractor_weights_path!r} is not accepted (leave it None)"
            )
        self._finish(seeded_net(TinyNet, seed=0))


class DigitsExtractor(GanlabExtractor):
    """`ganlab-digits`: weights from `feature_extractor_weights_path`, else the cache file,
    else trained once on the digits' held-out split (seconds on a CPU) and cached.

    `trained` says whether this construction trained the weights.
    """

    def __init__(
        self,
        name: str,
        features_list: list[str] | tuple[str, ...],
        feature_extractor_weights_path: str | os.PathLike | None = None,
        **kwargs: Any,  # the rest of torch-fidelity's options; none apply here
    ) -> None:
        super().__init__(name, features_list)
        net = seeded_net(DigitsNet, seed=DIGITS_SEED)  # all overwritten below
        self.trained = False
        if feature_extractor_weights_path is not None:
            load_weights(net, Path(feature_extractor_weights_path))
        elif not self._load_cache(net):
            state, accuracy = train_digits_net()
            net.load_state_dict(state)
            save_weights(net, digits_cache_file(), accuracy)
            self.trained = True
        self._finish(net)

    @staticmethod
    def _load_cache(net: DigitsNet) -> bool:
        path = digits_cache_file()
        if not path.exists():
            return False
        try:
            load_weights(net, path)
        except ExtractorError as error:
            log.warning("%s; retraining the %s extractor", error, DIGITS)
            return False
        return True


def digits_cache_file() -> Path:
    return cache_dir() / "extractors" / f"{DIGITS}-v{DIGITS_VERSION}.pt"


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a saved extractor file (or a bare state_dict) into `net`, strictly."""
    if not path.is_file():
        raise ExtractorError(f"feature extractor weights {str(path)!r}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(payload, dict) and "state_dict" in payload:
            if payload.get("version") != DIGITS_VERSION:
                raise ValueError(f"version {payload.get('version')!r}, expected {DIGITS_VERSION}")
            payload = payload["state_dict"]
        net.load_state_dict(payload)
    except Exception as error:  # unpickling, missing keys and shape mismatches all land here
        raise ExtractorError(
            f"feature extractor weights {str(path)!r} could not be loaded: {error}"
        ) from error


def save_weights(net: nn.Module, path: Path, heldout_accuracy: float) -> None:
    """Atomic write (temp file + rename), so a crash or a parallel rank never leaves half a
    file. A read-only cache only costs retraining next time, so it warns instead of failing."""
    payload = {
        "state_dict": net.state_dict(),
        "version": DIGITS_VERSION,
        "train_split": DIGITS_TRAIN_SPLIT,
        "heldout_accuracy": heldout_accuracy,
    }
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            torch.save(payload, f)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        log.warning("could not cache the %s extractor at %s: %s", DIGITS, path, error)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def digits_uint8(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A digits split at 32x32, quantized to uint8 as a PNG save would, and its labels."""
    data = DigitsDataModule(resolution=32, channels=1).real_dataset(split).tensors
    images = ((data["image"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return images, data["label"]


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 px and scales of 0.9..1.1, background (-1) filled in."""
    n = len(x)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * 2 / x.shape[-1])
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with zeros: shift the background to 0 and back
    return F.grid_sample(x + 1, grid, mode="bilinear", align_corners=False) - 1


def accuracy(net: DigitsNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = net.head(net.body(preprocess(images, net.resolution)))
    return (logits.argmax(dim=1) == labels).float().mean().item()


def train_digits_net() -> tuple[dict[str, torch.Tensor], float]:
    """Train DigitsNet on the held-out split; returns its state_dict and its accuracy on the
    GAN's training split. Deterministic for a given machine and thread count."""
    start = time.perf_counter()
    log.info("training the %s extractor once (cached at %s)", DIGITS, digits_cache_file())
    # Own all tensors here: the extractor may be built inside Lightning's inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        generator = torch.Generator().manual_seed(DIGITS_SEED)
        net = seeded_net(DigitsNet, seed=DIGITS_SEED)
        images, labels = digits_uint8(DIGITS_TRAIN_SPLIT)
        x = preprocess(images, net.resolution)
        steps_per_epoch = math.ceil(len(x) / DIGITS_BATCH_SIZE)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=2e-3, total_steps=DIGITS_EPOCHS * steps_per_epoch
        )
        for _ in range(DIGITS_EPOCHS):
            order = torch.randperm(len(x), generator=generator)
            for batch in order.split(DIGITS_BATCH_SIZE):
                logits = net.head(net.body(augment(x[batch], generator)))
                loss = F.cross_entropy(logits, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        net.eval()
        with torch.no_grad():
            rms = net.body(x).pow(2).mean().sqrt()
            net.feature_scale.fill_(1.0 / float(rms))
        heldout = accuracy(net, *digits_uint8(DIGITS_EVAL_SPLIT))
    log.info(
        "trained the %s extractor in %.1f s: accuracy %.4f on the digits %r split",
        DIGITS,
        time.perf_counter() - start,
        heldout,
        DIGITS_EVAL_SPLIT,
    )
    return net.state_dict(), heldout


EXTRACTORS: dict[str, type[GanlabExtractor]] = {DIGITS: DigitsExtractor, TINY: TinyExtractor}


def register_extractors() -> None:
    """Add ganlab's extractors to torch-fidelity's registry; safe to call again."""
    for name, cls in EXTRACTORS.items():
        if name not in FEATURE_EXTRACTORS_REGISTRY:  # the registry raises on duplicates
            register_feature_extractor(name, cls)

"""Perceptual (VGG feature) loss of SRGAN/ESRGAN: L1 between a frozen network's features of the
generated and the real image (BasicSR's PerceptualLoss with layer_weights {'conv5_4': 1},
criterion l1, before the ReLU)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from ganlab.checkpoint_io import load_safely
from ganlab.errors import CheckpointError, ConfigError

log = logging.getLogger("ganlab")

# torchvision's ImageNet VGG19 weights (VGG19_Weights.IMAGENET1K_V1)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
CONV5_4 = 34  # index of conv5_4 in torchvision's vgg19().features; its output is pre-ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_vgg19_path() -> Path:
    """Where torchvision keeps downloaded weights: $TORCH_HOME/hub/checkpoints/ (torch.hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def vgg19_features(weights_path: str | Path | None, layer: int = CONV5_4) -> nn.Sequential:
    """torchvision's VGG19 `features[: layer + 1]` with the ImageNet weights read (tensors only)
    from `weights_path`, or from torch.hub's folder when it is None. No download: a missing file
    is a ConfigError that says where to put it."""
    path = Path(weights_path).expanduser() if weights_path else default_vgg19_path()
    if not path.is_file():
        if weights_path:
            given = f"model.perceptual.weights_path={str(weights_path)!r} does not exist"
        else:
            given = f"model.perceptual.weights_path is null and {path} does not exist"
        raise ConfigError(
            f"{given}: the perceptual loss needs torchvision's ImageNet VGG19 weights, the file "
            f"{VGG19_FILE} (https://download.pytorch.org/models/{VGG19_FILE}); put it in "
            f"{path.parent} ($TORCH_HOME/hub/checkpoints/) or give model.perceptual.weights_path="
            "FILE, or set model.perceptual_weight=0 to train without the perceptual loss"
        )
    features = make_layers(cfgs["E"])  # VGG19's convolutional part, as torchvision builds it
    layers = len(features)
    if not 0 <= layer < layers:
        raise ConfigError(
            f"model.perceptual.layer={layer} is not a layer of VGG19's features; accepted: 0 to "
            f"{layers - 1} ({CONV5_4}: conv5_4 before its ReLU, as SRGAN and ESRGAN)"
        )
    try:
        state = load_safely(path)
    except CheckpointError as err:  # its message names the file as ckpt_path=
        raise ConfigError(
            str(err).replace("ckpt_path=", "model.perceptual.weights_path=", 1)
        ) from err
    prefix = "features."
    found = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    expected = features.state_dict()
    wrong = [k for k in expected if k not in found or found[k].shape != expected[k].shape]
    if wrong:
        raise ConfigError(
            f"{path} is not torchvision's VGG19 state dict ({VGG19_FILE}): features.{wrong[0]} "
            f"is missing or has another shape ({len(wrong)} of {len(expected)} tensors differ)"
        )
    features.load_state_dict({k: found[k] for k in expected})
    return features[: layer + 1]


class PerceptualLoss(nn.Module):
    """mean |phi(fake) - phi(real)|, phi a frozen feature network (VGG19 up to conv5_4 before
    ReLU by default) applied to images mapped from [-1, 1] to [0, 1] and ImageNet-normalised.

    The network is a submodule, so it follows the model to its device, but it is left out of
    `state_dict()` (its weights are the file the config names, not part of a run's state) and
    out of every optimizer (no parameter requires a gradient); it runs in eval mode.
    """

    def __init__(
        self,
        weights_path: str | None = None,  # VGG19 state dict; None: torch.hub's checkpoints/ folder
        layer: int = CONV5_4,  # last VGG19 features index used (34: conv5_4, pre-ReLU)
        feature_network: nn.Module | None = None,  # any image -> features network, instead of VGG19
        feature_name: str | None = None,  # how logs name an injected network (e.g. "random-init")
    ):
        super().__init__()
        if feature_network is None:
            feature_network = vgg19_features(weights_path, layer)
            path = weights_path or default_vgg19_path()
            self.description = f"VGG19 features[:{layer + 1}] with ImageNet weights from {path}"
        else:
            name = feature_name or "an injected network with its own weights, not VGG19's"
            self.description = f"{type(feature_network).__name__} ({name})"
        self.network = feature_network.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_state_dict_post_hook(_drop_network_weights)
        self.register_load_state_dict_pre_hook(_keep_network_weights)
        log.info("perceptual loss: %s", self.description)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        # Frozen: no dropout, no BatchNorm statistics updates. Set here rather than when built,
        # since Lightning warns about every submodule in eval mode when training starts.
        if self.network.training:
            self.network.eval()
        unit = (images.float() + 1) / 2
        if unit.shape[1] == 1:
            unit = unit.expand(-1, 3, -1, -1)  # grayscale: the same value in each colour
        return self.network((unit - self.mean) / self.std)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(real)
        return F.l1_loss(self.features(fake), target)


def _drop_network_weights(module: PerceptualLoss, state_dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(f"{prefix}network.")]:
        del state_dict[key]


def _keep_network_weights(module: PerceptualLoss, state_dict, prefix: str, *args) -> None:
    """Loading a state dict (which never holds the frozen network) keeps the network as built."""
    for key, value in module.network.state_dict().items():
        state_dict.setdefault(f"{prefix}network.{key}", value)

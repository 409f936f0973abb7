"""Features of the real data, computed once per protocol and cached on disk.

The cache key is a hash of everything that changes the features: dataset identity (for an
image folder, its contents: each file's name, size and modification time), split, count,
extractor and its weights, layers. A file whose stored protocol or checksum does not match
(stale, truncated, edited) is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("ganlab")

Features = dict[str, torch.Tensor]


def protocol_key(protocol: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


def features_checksum(features: Features) -> str:
    digest = hashlib.sha256()
    for layer in sorted(features):
        digest.update(layer.encode())
        digest.update(features[layer].contiguous().numpy().tobytes())
    return digest.hexdigest()


class ReferenceCache:
    """`<root>/reference/<key>.pt`, holding the protocol, the features and their checksum."""

    def __init__(self, root: str | Path):
        self.dir = Path(root).expanduser() / "reference"

    def path(self, protocol: dict[str, Any]) -> Path:
        return self.dir / f"{protocol_key(protocol)}.pt"

    def load(self, protocol: dict[str, Any]) -> Features | None:
        path = self.path(protocol)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            features = payload["features"]
            valid = payload["protocol"] == protocol and payload["checksum"] == features_checksum(
                features
            )
        except Exception as err:  # any unreadable file is a cache miss, not a crash
            log.warning("reference statistics %s are unreadable (%s); recomputing them", path, err)
            return None
        if not valid:
            log.warning("reference statistics %s are stale or corrupt; recomputing them", path)
            return None
        return features

    def save(self, protocol: dict[str, Any], features: Features) -> Path:
        path = self.path(protocol)
        self.dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "protocol": protocol,
            "features": features,
            "checksum": features_checksum(features),
        }
        # Write then rename: a run killed mid-write leaves no half file under the real name.
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def get_or_compute(self, protocol: dict[str, Any], compute: Callable[[], Features]):
        """(features, computed_now)."""
        features = self.load(protocol)
        if features is not None:
            return features, False
        features = compute()
        self.save(protocol, features)
        return features, True

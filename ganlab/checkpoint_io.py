"""Checkpoint writes that a kill, a crash or a full disk cannot leave half-done.

Lightning writes every checkpoint through a CheckpointIO plugin. `AtomicCheckpointIO` writes
the new file beside its target (a rename is atomic only within one filesystem), flushes it to
disk, keeps the previous complete checkpoint as `<name>.prev.ckpt`, and only then renames the new
file onto the target. At every instant at least one complete checkpoint exists under a known
name, and the temp files of a killed writer are removed by the next save.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import secrets
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ganlab.errors import CheckpointError

TEMP_SUFFIX = ".partial"


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint file that is empty, truncated or not a torch file at all."""


def load_safely(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with `weights_only=True`: tensors and plain values only, so that loading a
    file never runs code. Raises CheckpointError saying what is wrong with the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        # The weights-only unpickler names what it refused; any other failure (not a zip, an
        # empty or truncated file) means the file is not a complete torch checkpoint.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and found:
            raise CheckpointError(
                f"ckpt_path={str(path)!r} holds something other than tensors and plain values "
                f"(it refers to {found.group(1)}) and was refused without running it: ganlab "
                "checkpoints never contain code, so this file was not written by ganlab-train "
                "or was changed since"
            ) from err
        raise _unreadable(path, err) from err


def _unreadable(path: str | Path, err: Exception) -> UnreadableCheckpointError:
    if Path(path).stat().st_size == 0:
        reason = "the file is empty"
    elif isinstance(err, pickle.UnpicklingError):
        reason = "its contents are not those of a file written by torch.save"
    else:
        reason = str(err).split(". ")[0]
    message = f"ckpt_path={str(path)!r} is not a readable checkpoint ({reason})"
    previous = previous_checkpoint(path)
    if previous.is_file():
        message += (
            f"; a write may have been interrupted: the run's previous checkpoint is "
            f"{previous}, give ckpt_path={previous}"
        )
    return UnreadableCheckpointError(message)


def previous_checkpoint(path: str | Path) -> Path:
    """Where the checkpoint that `path` replaced is kept: last.ckpt -> last.prev.ckpt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temp_files(target: str | Path) -> list[Path]:
    """Delete the temp files that writers of `target` left when they were killed mid-write."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = [p for p in target.parent.glob(f"{_temp_prefix(target)}*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
            path.unlink()
    return stale


def _fsync_directory(directory: Path) -> None:
    """Make the renames durable; some platforms cannot open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(target: Path) -> Path:
    """A fresh name beside `target` (not created: the file gets the usual umask mode)."""
    return target.with_name(f"{_temp_prefix(target)}{secrets.token_hex(6)}{TEMP_SUFFIX}")


def atomic_save(checkpoint: dict[str, Any], target: str | Path) -> None:
    """torch.save `checkpoint` to `target` so that a reader never sees a partial file there."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    temp = _temp_path(target)
    try:
        with open(temp, "xb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        if target.exists():
            _keep_previous(target, previous_checkpoint(target))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(target.parent)


def _keep_previous(target: Path, previous: Path) -> None:
    """Make `previous` the current `target` while `target` stays in place: a hard link under a
    temp name renamed over `previous`. Where hard links are not supported, `target` itself is
    renamed (then `previous` is the complete checkpoint until the new one is in place)."""
    if previous.exists() and os.path.samefile(target, previous):
        return  # a killed save left both names on one file; a rename between them is a no-op
    link = _temp_path(target)
    try:
        os.link(target, link)
    except OSError:
        os.replace(target, previous)
        return
    os.replace(link, previous)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save/torch.load plugin, with atomic writes (see the module docstring)
    and loads that never run code (`weights_only=True`)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Any = lambda storage, location: storage,  # as saved, as Lightning does
        weights_only: bool | None = None,  # ignored: always True
    ) -> dict[str, Any]:
        return load_safely(path, map_location)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        previous = previous_checkpoint(path)
        if previous.exists():
            previous.unlink()

"""Logger construction that needs more than a config: W&B without an account or network."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger("ganlab")

WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def wandb_offline_reason() -> str | None:
    """Why W&B cannot log online here (no account, no network), or None when it can."""
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_HOST)).hostname or ""
    if not os.environ.get("WANDB_API_KEY") and not _netrc_has(host):
        return "no W&B account on this machine (WANDB_API_KEY unset, no `wandb login`)"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        return f"{host} cannot be reached ({err})"
    return None


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A `WandbLogger`; `offline=None` logs online when it can, else offline, and says so.
    An offline run is uploaded later with `wandb sync <save_dir>/wandb/offline-run-*`."""
    if offline is None:
        reason = wandb_offline_reason()
        offline = reason is not None
        if offline:
            where = os.path.join(kwargs.get("save_dir") or ".", "wandb")
            log.warning(
                "W&B logs offline: %s. The run is kept in %s; upload it later with "
                "`wandb sync %s/offline-run-*`",
                reason,
                where,
                where,
            )
    return WandbLogger(offline=offline, **kwargs)


def finish_runs(loggers: list, failed: bool = False) -> None:
    """Close the W&B run of this training: its files are complete on disk, and the next run in
    the same process (a Hydra multirun) starts a run of its own instead of reusing this one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=1 if failed else 0)

"""Progress of a long loop: a bar at a terminal, a log line now and then everywhere else."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger("ganlab")
Item = TypeVar("Item")


def progress(
    items: Iterable[Item], desc: str, total: int | None = None, every_s: float = 30.0
) -> Iterator[Item]:
    """Yield `items`; at a terminal behind a bar with an ETA, elsewhere (logs, CI, pipes) with
    a log line every `every_s` seconds, so a several-minute extraction is never silent."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    start = last = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of_total = f"/{total}" if total else ""
            log.info("%s: %d%s batches, %.0f s", desc, done, of_total, now - start)

"""Random number streams: one per process, and every state saved for checkpoints that resume
exactly.

Every process is first seeded alike (`pl.seed_everything` in train.py), so that all build the
same initial weights. Before training, each process switches to a stream of its own, derived
from (seed, global rank): otherwise every DDP rank would draw the same latents, penalty
interpolation weights and augmentations, and N devices would train on N copies of one batch.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger("ganlab")


def seed_process_streams(rank: int, resumed_after: int = 0) -> None:
    """Seed torch (CPU and CUDA), numpy and python `random` from (seed, rank[, resumed_after]).

    The seed is the one `pl.seed_everything` recorded in PL_GLOBAL_SEED; an unseeded run gets
    fresh entropy per process. `resumed_after` (a step count) keeps a run that re-derives its
    streams on resume from replaying the draws it made from the start.
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        sequence = np.random.SeedSequence()
    else:
        sequence = np.random.SeedSequence([int(seed), rank, resumed_after])
    torch_seq, numpy_seq, python_seq = sequence.spawn(3)
    torch.manual_seed(int(torch_seq.generate_state(1, np.uint64)[0]))  # seeds CUDA devices too
    np.random.seed(numpy_seq.generate_state(4))
    random.seed(int(python_seq.generate_state(1, np.uint64)[0]))


def collect_rng_states() -> dict[str, Any]:
    """This process's states; only tensors and Python primitives, so
    `torch.load(weights_only=True)` reads them."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached_gaussian],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def gather_rng_states() -> list[dict[str, Any]]:
    """Every process's states, indexed by global rank. A collective under torch.distributed:
    every rank must call it (Lightning saves checkpoints on every rank)."""
    states = collect_rng_states()
    if not (dist.is_available() and dist.is_initialized()):
        return [states]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, states)
    return gathered


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    # A run resumed on other hardware (e.g. a CPU checkpoint on a GPU) keeps its fresh CUDA state.
    cuda_states = states.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def restore_process_rng_states(
    saved: list[dict[str, Any]] | dict[str, Any], rank: int, world_size: int, resumed_after: int
) -> None:
    """Give this process back the stream it had when `saved` (from `gather_rng_states`) was
    written. From another number of processes there is no such stream: each process derives a
    new one, so the run goes on, but not exactly as it would have without the interruption."""
    per_rank = [saved] if isinstance(saved, dict) else list(saved)  # a dict: one process's states
    if len(per_rank) == world_size:
        restore_rng_states(per_rank[rank])
        return
    if rank == 0:
        log.warning(
            "the checkpoint holds the random number states of %d processes, but this run has "
            "%d; each process starts a new stream from (seed, rank, %d D steps done), so "
            "training continues, but does not repeat an uninterrupted run exactly",
            len(per_rank),
            world_size,
            resumed_after,
        )
    seed_process_streams(rank, resumed_after)

"""Cost of one sample-quality evaluation (FID and IS of a DCGAN on digits) on the CPU.

For each extractor (ganlab-tiny, ganlab-digits), with a cold reference cache (the real digits'
features are extracted) and a warm one (they are read from disk), in 1 and in 2 processes
(gloo; the CPU threads are split between the processes), prints the evaluation's wall time,
the peak resident memory of the largest process during the evaluation, and the scores, which
must not depend on the number of processes.

    python benchmarks/eval_cost.py [--num-samples 10000]

Each measurement runs in fresh processes. The digits extractor's weights are trained (and timed)
once before the table; "cold" means the reference statistics are not cached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

import torch

METRICS = ["fid", "is"]


def worker(args) -> None:
    """One process of one measurement; prints a JSON line."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(max(1, args.threads // world_size))
    import torch.distributed as dist

    from ganlab.data import DigitsDataModule
    from ganlab.losses import BCELoss
    from ganlab.metrics.evaluator import Processes, SampleQuality
    from ganlab.models import GANModule
    from ganlab.networks import DCGANDiscriminator, DCGANGenerator

    processes = Processes()
    if world_size > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)

        def gather(tensor):
            parts = [torch.empty_like(tensor) for _ in range(world_size)]
            dist.all_gather(parts, tensor)
            return torch.stack(parts)

        def broadcast(obj):
            box = [obj]
            dist.broadcast_object_list(box, src=0)
            return box[0]

        processes = Processes(rank, world_size, gather, broadcast)

    torch.manual_seed(0)
    model = GANModule(
        DCGANGenerator(100, 1, 32),
        DCGANDiscriminator(1, 32),
        BCELoss(),
        torch.optim.Adam,
        torch.optim.Adam,
        latent_dim=100,
        ema_decay=None,
    ).eval()
    evaluator = SampleQuality(
        metrics=METRICS,
        num_samples=args.num_samples,
        feature_extractor=args.extractor,
        cache_dir=args.cache_dir,
    )
    datamodule = DigitsDataModule()
    evaluator.extractor(args.extractor, model.device)  # weights load outside the timing
    if world_size > 1:
        dist.barrier()
    reset_peak_memory()
    start = time.perf_counter()
    result = evaluator.evaluate(model, datamodule, processes)
    seconds = time.perf_counter() - start
    peak_mb = peak_memory_mb()
    print(
        json.dumps(
            {
                "rank": rank,
                "seconds": seconds,
                "peak_mb": peak_mb,
                "scores": result.scores,
                "reference_computed": evaluator.last_reference_computed,
            }
        ),
        flush=True,
    )
    if world_size > 1:
        dist.destroy_process_group()


def reset_peak_memory() -> None:
    """Linux: restart the resident-memory high-water mark, so that the peak is the evaluation's
    (imports and model building happened before)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(extractor: str, cache_dir: str, world_size: int, args) -> dict:
    env = {
        **os.environ,
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--extractor",
        extractor,
        "--cache-dir",
        cache_dir,
        "--num-samples",
        str(args.num_samples),
        "--threads",
        str(args.threads),
    ]
    procs = [
        subprocess.Popen(command, env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, text=True)
        for rank in range(world_size)
    ]
    rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: {[p.returncode for p in procs]}")
    rank0 = next(r for r in rows if r["rank"] == 0)
    return {**rank0, "peak_mb": max(r["peak_mb"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--extractor", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    weights_dir = tempfile.mkdtemp(prefix="ganlab-eval-cost-")
    os.environ["GANLAB_CACHE_DIR"] = weights_dir  # the digits extractor's weights live here
    from ganlab.metrics.extractors import DigitsExtractor

    start = time.perf_counter()
    DigitsExtractor("ganlab-digits", ["features", "logits"])
    print(f"ganlab-digits extractor trained once in {time.perf_counter() - start:.1f} s")
    print(
        f"{args.num_samples} generated samples (DCGAN 1x32x32), reference: digits train split "
        f"(1437 images), metrics {METRICS}, {args.threads} CPU threads in all, "
        f"torch {torch.__version__}"
    )
    print(
        f"{'extractor':>14} {'cache':>5} {'procs':>5} {'wall s':>8} {'peak MB':>8} "
        f"{'fid':>12} {'is_mean':>10}"
    )
    for extractor in ("ganlab-tiny", "ganlab-digits"):
        for world_size in (1, 2):
            cache_dir = tempfile.mkdtemp(prefix="ganlab-ref-")
            for cache in ("cold", "warm"):
                row = measure(extractor, cache_dir, world_size, args)
                assert row["reference_computed"] == (cache == "cold")
                print(
                    f"{extractor:>14} {cache:>5} {world_size:>5} {row['seconds']:8.1f} "
                    f"{row['peak_mb']:8.0f} {row['scores']['fid']:12.6f} "
                    f"{row['scores']['is_mean']:10.6f}"
                )


if __name__ == "__main__":
    main()

"""One FID/IS table for every family's CPU-sized experiment on the bundled digits.

Trains each `experiment=<family>_digits` with `ganlab-train`, exactly as a user would, and
reads the evaluation callback's scores from each run's metrics.json: 5,000 EMA samples against
the digits train split, features of the `ganlab-digits` extractor (scores comparable with each
other, not with Inception-feature scores). Prints a markdown table of the last evaluation and
the best FID seen, with wall times.

    python benchmarks/families_digits.py [--experiments a,b,...] [--jobs 1] [--run-dir DIR]
                                         [--out results.json] [overrides ...]

Extra arguments are Hydra overrides given to every run (e.g. trainer.max_epochs=2 to try it).
With `--jobs 2` two runs go at once, one CPU thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EXPERIMENTS = (
    "gan_mlp_digits",
    "dcgan_digits",
    "lsgan_digits",
    "wgan_digits",
    "wgan_gp_digits",
    "sngan_digits",
    "cgan_digits",
    "unrolled_digits",
)


def run_one(experiment: str, root: Path, threads: int, overrides: list[str]) -> dict:
    run_dir = root / experiment
    command = [
        str(Path(sys.executable).with_name("ganlab-train")),
        f"experiment={experiment}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")
    evaluations = json.loads((run_dir / "metrics.json").read_text())
    last = evaluations[-1]
    best = min(evaluations, key=lambda e: e["scores"]["fid"])
    return {
        "experiment": experiment,
        "seconds": seconds,
        "epoch": last["protocol"]["epoch"] + 1,
        "scores": last["scores"],
        "best_fid": best["scores"]["fid"],
        "best_fid_epoch": best["protocol"]["epoch"] + 1,
        "extractor": last["protocol"].get("feature_extractor"),
        "run_dir": str(run_dir),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| experiment | FID | IS | KID | precision | recall | best FID (epoch) | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row["scores"]
        lines.append(
            f"| {row['experiment']} | {s['fid']:.2f} | {s['is_mean']:.2f} ± {s['is_std']:.2f} "
            f"| {s['kid_mean']:.4f} | {s['precision']:.3f} | {s['recall']:.3f} "
            f"| {row['best_fid']:.2f} ({row['best_fid_epoch']}) | {row['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--run-dir", type=Path, help="where runs are written (default: temp)")
    parser.add_argument("--out", type=Path, help="write every run's scores here as JSON")
    args, overrides = parser.parse_known_args()

    experiments = args.experiments.split(",")
    for name in experiments:
        if name not in EXPERIMENTS:
            parser.error(f"--experiments: {name!r} is not one of {', '.join(EXPERIMENTS)}")
    root = (args.run_dir or Path(tempfile.mkdtemp(prefix="ganlab-families-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(f"runs in {root}", flush=True)
    threads = 1 if args.jobs > 1 else max(1, min(2, os.cpu_count() or 1))

    def work(name: str) -> dict:
        row = run_one(name, root, threads, overrides)
        print(f"{name}: FID {row['scores']['fid']:.2f} ({row['seconds']:.0f} s)", flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(work, experiments))
    print()
    print(f"features: {rows[0]['extractor']}")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

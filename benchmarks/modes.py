"""Mode collapse on the 2D mixtures of the PacGAN / VEEGAN protocol.

Trains each recipe (an experiment file) on `toy_ring` (8 Gaussians, std 0.01) and `toy_grid`
(25 Gaussians, std 0.05) over several seeds, each run composed as `ganlab-train
experiment=<recipe> data=toy_<layout> seed=<seed>` composes it, and reads the evaluation
callback's scores after the last epoch from the run's metrics.json: 2,500 samples; a point is
high quality within 3 standard deviations of its nearest mode; a mode is captured when at least
one high-quality point is nearest to it; the reverse KL is that of the high-quality points'
distribution over modes from the uniform one. Prints mean ± standard error over seeds.

    python benchmarks/modes.py [--recipes gan,wgan_gp,unrolled,best] [--layouts ring,grid]
                               [--seeds 0,1,2,3,4] [--jobs 2] [--out results.json] [overrides ...]

Extra arguments are Hydra overrides given to every run (e.g. trainer.max_epochs=5).
Runs go `--jobs` at a time in worker processes, one CPU thread each; their console output goes
to `worker-<pid>.log` files in the run directory.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from ganlab.cli import compose_run
from ganlab.train import train

# Each recipe is an experiment file, trained on the ring as written and on the grid with
# `data=toy_grid`.
RECIPES = {
    "gan": "toy_ring",
    "wgan_gp": "wgan_gp_ring",
    "unrolled": "unrolled_ring",
    "best": "r1_ring",
}
COST_ORDER = ("best", "unrolled", "gan", "wgan_gp")
LAYOUTS = ("ring", "grid")
METRICS = ("modes", "hq_frac", "rev_kl")

# Published points of comparison (same protocol): PacGAN, Lin et al. 2018, Table 1;
# VEEGAN, Srivastava et al. 2017, Table 1.
PUBLISHED = {
    "ring": [("GAN (PacGAN table)", 6.3, 98.2), ("PacGAN4", 7.8, 95.9), ("VEEGAN", 8.0, 52.9)],
    "grid": [("GAN (PacGAN table)", 17.3, 94.8), ("PacGAN4", 24.8, 93.6), ("VEEGAN", 24.6, 40.0)],
}


def start_worker(log_dir: Path) -> None:
    """One thread per worker; the worker's console output goes to a log file, not the table."""
    torch.set_num_threads(1)
    log = open(log_dir / f"worker-{os.getpid()}.log", "w")  # stays open for the worker's life
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)


def run_one(experiment: str, layout: str, seed: int, root: Path, overrides: list[str]) -> dict:
    """Train one recipe on one mixture with one seed; returns its final scores and wall time."""
    run_dir = root / f"{experiment}-{layout}-seed{seed}"
    cfg = compose_run(
        [
            f"experiment={experiment}",
            f"data=toy_{layout}",
            f"seed={seed}",
            "logger=none",
            "callbacks.model_checkpoint=null",
            "callbacks.sample_grid=null",
            "+trainer.enable_checkpointing=false",
            "callbacks.sample_quality.every_n_epochs=1000000",  # scored once, after the last epoch
            *overrides,
        ],
        run_dir,
    )
    start = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - start
    scores = json.loads((run_dir / "metrics.json").read_text())[-1]["scores"]
    return {"experiment": experiment, "layout": layout, "seed": seed, "seconds": seconds, **scores}


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def table(results: list[dict], recipes: list[str], layouts: list[str]) -> str:
    lines = [
        "| data | recipe | experiment | seeds | modes | high quality % | reverse KL | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for layout in layouts:
        total = 8 if layout == "ring" else 25
        for recipe in recipes:
            rows = [r for r in results if r["layout"] == layout and r["recipe"] == recipe]
            if not rows:
                continue
            modes = mean_se([r["modes"] for r in rows])
            hq = mean_se([100 * r["hq_frac"] for r in rows])
            kl = mean_se([r["rev_kl"] for r in rows])
            seconds = sum(r["seconds"] for r in rows) / len(rows)
            lines.append(
                f"| {layout} | {recipe} | {rows[0]['experiment']} | {len(rows)} "
                f"| {modes[0]:.1f} ± {modes[1]:.1f} / {total} | {hq[0]:.1f} ± {hq[1]:.1f} "
                f"| {kl[0]:.3f} ± {kl[1]:.3f} | {seconds:.0f} |"
            )
    for layout in layouts:
        for name, modes, hq in PUBLISHED[layout]:
            lines.append(f"| {layout} | {name} (published) | | | {modes} | {hq} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--run-dir", type=Path, help="where runs are written (default: temp)")
    parser.add_argument("--out", type=Path, help="write every run's scores here as JSON")
    args, overrides = parser.parse_known_args()

    recipes = args.recipes.split(",")
    layouts = args.layouts.split(",")
    for recipe in recipes:
        if recipe not in RECIPES:
            parser.error(f"--recipes: {recipe!r} is not one of {', '.join(RECIPES)}")
    for layout in layouts:
        if layout not in LAYOUTS:
            parser.error(f"--layouts: {layout!r} is not one of {', '.join(LAYOUTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    root = (args.run_dir or Path(tempfile.mkdtemp(prefix="ganlab-modes-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(f"runs in {root}", flush=True)

    jobs = [(recipe, layout, seed) for layout in layouts for recipe in recipes for seed in seeds]
    # the costliest recipes first, so two workers finish together
    jobs.sort(key=lambda job: COST_ORDER.index(job[0]))
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, context, start_worker, (root,)) as pool:
        futures = [
            pool.submit(run_one, RECIPES[recipe], layout, seed, root, overrides)
            for recipe, layout, seed in jobs
        ]
        results = []
        for (recipe, layout, seed), future in zip(jobs, futures, strict=True):
            row = {"recipe": recipe, **future.result()}
            print(
                f"{recipe:>9} {layout} seed {seed}: {row['modes']} modes, "
                f"{100 * row['hq_frac']:.1f}% high quality, reverse KL {row['rev_kl']:.3f} "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )
            results.append(row)
    wall = time.perf_counter() - start

    print()
    print(table(results, recipes, layouts))
    print(f"\n{len(results)} runs in {wall / 60:.1f} min wall ({args.jobs} at a time)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

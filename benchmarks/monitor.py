"""The training monitor's alarms on runs made to fail (hits) and on every shipped `*_digits` and
2D toy experiment (false alarms).

Each run is `ganlab-train experiment=<name>` with the default monitor (callbacks.monitor), no
logger, checkpoint, sample grid or scoring; the alarms that fired are read from the run's
monitor/alarms.json. The runs made to fail are one epoch of toy_ring in 400 batches of 64, with
D learning 1000 times faster than G (d_wins expected), with both learning rates at 1e-2
(mode_collapse expected), as in tests/test_monitor.py, with a discriminator of ReLU units at
learning rate 0.1 (vanishing_g_grad expected) and with an unconstrained Wasserstein critic
(divergence expected). Each row gives the run's minutes and the machine's load (5-minute
average) at its end.

    python benchmarks/monitor.py [--runs dcgan_digits,...] [--epochs N] [--jobs 2]
                                 [--out results.json] [overrides ...]

`--epochs N` shortens every healthy run to N epochs (default: the epochs each experiment ships);
extra arguments are Hydra overrides given to every run. Runs go `--jobs` at a time in worker
processes, one CPU thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from ganlab.cli import compose_run
from ganlab.train import train

EXPERIMENTS = Path(__file__).resolve().parent.parent / "conf" / "experiment"
# every shipped *_digits experiment, and the 2D toy ones
HEALTHY = sorted(p.stem for p in EXPERIMENTS.glob("*_digits.yaml")) + [
    "toy_ring",
    "wgan_gp_ring",
    "unrolled_ring",
    "r1_ring",
]
# name -> (experiment, overrides, the alarm expected to fire); one epoch of 400 batches of 64,
# whatever --epochs says
SHORT = ["data.batch_size=64", "data.num_samples=25600", "trainer.max_epochs=1"]
FAILING = {
    "d_wins_ring": (
        "toy_ring",
        [*SHORT, "model.g_optimizer.lr=1e-5", "model.d_optimizer.lr=1e-2"],
        "d_wins",
    ),
    "collapse_ring": (
        "toy_ring",
        [*SHORT, "model.g_optimizer.lr=1e-2", "model.d_optimizer.lr=1e-2"],
        "mode_collapse",
    ),
    # D of ReLU units at lr 0.1: its units die where the fakes are, and G's gradient with them
    "vanishing_ring": (
        "toy_ring",
        [*SHORT, "+model.discriminator.negative_slope=0", "model.d_optimizer.lr=1e-1"],
        "vanishing_g_grad",
    ),
    # a Wasserstein critic without a Lipschitz constraint (no clipping, GP or SN), both at 1e-2
    "divergence_ring": (
        "toy_ring",
        [*SHORT, "loss=wasserstein", "model.g_optimizer.lr=1e-2", "model.d_optimizer.lr=1e-2"],
        "divergence",
    ),
}
RUNS = {**{name: (name, [], None) for name in HEALTHY}, **FAILING}


def start_worker(log_dir: Path) -> None:
    """One thread per worker; its console output goes to a log file, not the table."""
    torch.set_num_threads(1)
    log = open(log_dir / f"worker-{os.getpid()}.log", "w")  # stays open for the worker's life
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)


def run_one(name: str, root: Path, epochs: int | None, overrides: list[str]) -> dict:
    experiment, extra, expected = RUNS[name]
    run_dir = root / name
    cfg = compose_run(
        [
            f"experiment={experiment}",
            "logger=none",
            "callbacks.model_checkpoint=null",
            "callbacks.sample_grid=null",
            "callbacks.sample_quality=null",
            "+trainer.enable_checkpointing=false",
            "callbacks.monitor.views=false",
            "trainer.accelerator=cpu",
            *([f"trainer.max_epochs={epochs}"] if epochs and expected is None else []),
            *extra,
            *overrides,
        ],
        run_dir,
    )
    start = time.perf_counter()
    train(cfg)
    fired = json.loads((run_dir / "monitor" / "alarms.json").read_text())
    return {
        "run": name,
        "expected": expected,
        "fired": {alarm: entry["step"] for alarm, entry in fired.items()},
        "epochs": int(cfg.trainer.max_epochs),
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "load": round(os.getloadavg()[1], 1),  # the machine's, over the last 5 minutes
    }


def table_row(row: dict) -> str:
    fired = ", ".join(f"{a}: {s}" for a, s in row["fired"].items()) or "-"
    if row["expected"] is None:
        verdict = "false alarm" if row["fired"] else "silent"
    else:
        verdict = "hit" if row["expected"] in row["fired"] else "missed"
    cells = [row["run"], row["epochs"], row["expected"] or "-", fired, verdict]
    cells += [row["minutes"], row["load"]]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--out", default=None)
    args, overrides = parser.parse_known_args()
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"--runs: {unknown[0]!r} is not one of {', '.join(RUNS)}")
    root = Path(args.run_dir or tempfile.mkdtemp(prefix="ganlab-monitor-"))
    root.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    print("| run | epochs | expected | fired (alarm: D step) | verdict | minutes | load |")
    print("|---|---|---|---|---|---|---|", flush=True)
    rows = []
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=start_worker, initargs=(root,)
    ) as pool:
        futures = [pool.submit(run_one, n, root, args.epochs, overrides) for n in names]
        for future in as_completed(futures):  # each row as its run ends
            row = future.result()
            rows.append(row)
            print(table_row(row), flush=True)
    hits = sum(row["expected"] in row["fired"] for row in rows if row["expected"])
    false_alarms = sum(len(row["fired"]) for row in rows if row["expected"] is None)
    failing = sum(row["expected"] is not None for row in rows)
    healthy = len(rows) - failing
    print(
        f"\nhits: {hits} of {failing} runs made to fail; false alarms: {false_alarms} on "
        f"{healthy} healthy runs"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

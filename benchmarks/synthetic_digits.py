"""Is a conditional GAN's output useful training data? (`experiment=cgan_digits`)

Trains `ganlab-train experiment=cgan_digits` (or takes `--ckpt`), then runs `ganlab-augment` on
its checkpoint: the fixed classifier trained on real digits, on generated digits alone (CAS), on
real + generated at ratios 0.5, 1 and 2, and on a tenth of the real digits with and without
generated ones, each tested on the real held-out split over seeds 0, 1, 2. Prints the table
and the wall times; the JSON with the protocol lands beside the checkpoint.

    python benchmarks/synthetic_digits.py [--ckpt PATH] [--run-dir DIR] [ganlab-augment args ...]

Extra arguments go to ganlab-augment (e.g. epochs=20 use_ema=false); training overrides are
not taken: the experiment trains as shipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = "cgan_digits"


def script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def timed(command: list[str]) -> float:
    print("running:", Path(command[0]).name, *command[1:], flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a trained conditional checkpoint")
    parser.add_argument("--run-dir", type=Path, help="where to train (default: a temp dir)")
    args, augment_args = parser.parse_known_args()

    train_seconds = None
    ckpt = args.ckpt
    if ckpt is None:
        run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="ganlab-cgan-digits-"))).resolve()
        command = [script("ganlab-train"), f"experiment={EXPERIMENT}", f"hydra.run.dir={run_dir}"]
        train_seconds = timed(command)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
    augment_seconds = timed([script("ganlab-augment"), f"ckpt_path={ckpt}", *augment_args])
    if train_seconds is not None:
        print(f"training wall time: {train_seconds:.1f} s (evaluations included)")
    print(f"ganlab-augment wall time: {augment_seconds:.1f} s")


if __name__ == "__main__":
    main()

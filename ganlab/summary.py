"""`ganlab-summary DIR`: one table of finished runs, mean ± std across seeds per configuration.

A configuration is what sets a run apart from the other runs: its command-line overrides
(`.hydra/overrides.yaml`), seeds aside, and the protocol of its scores (`eval.<key>=<value>`,
e.g. the number of generated samples or the feature extractor), so that scores measured
differently never share a row. A run's scores are the last record of its `metrics.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

# Overrides that do not set a configuration apart: the seed is what a row averages over, and
# the evaluation settings show in the protocol (only where they change it).
IGNORED_OVERRIDES = ("seed=", "hydra.", "hparams_search=", "callbacks.sample_quality.", "paths.")
# Protocol entries that do not change what a score measures: when in training it was taken,
# the number of processes (scores are identical for any), the 2D data's draw (mode counts use
# the mixture's centres and std only), and the latent range implied by the sample count.
IGNORED_PROTOCOL = (
    "epoch",
    "step",
    "images_seen",
    "world_size",
    "reference.seed",
    "latents.indices",
)


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root`: those holding the resolved `config.yaml` of a run."""
    return sorted(p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra")


def overrides(run_dir: Path) -> frozenset[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    given = yaml.safe_load(path.read_text()) if path.is_file() else []
    return frozenset(o for o in given or [] if not o.lstrip("+~").startswith(IGNORED_OVERRIDES))


def run_seed(run_dir: Path) -> Any:
    return (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("seed")


def last_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    return history[-1] if history else {}


def final_scores(run_dir: Path) -> dict[str, float]:
    return last_record(run_dir).get("scores", {})


def flat_protocol(protocol: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"kid": {"subset_size": 100}} -> {"kid.subset_size": "100"}, without IGNORED_PROTOCOL."""
    flat: dict[str, str] = {}
    for key, value in protocol.items():
        name = f"{prefix}{key}"
        if name in IGNORED_PROTOCOL:
            continue
        if isinstance(value, dict) and value:
            flat.update(flat_protocol(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if not isinstance(value, str) else value
    return flat


def run_labels(run_dirs: list[Path]) -> dict[Path, str]:
    """Each run's configuration: the overrides and protocol entries in which the runs differ.
    Runs alike in both are labelled by the overrides they share, or "(defaults)"."""
    given = {run_dir: overrides(run_dir) for run_dir in run_dirs}
    protocols = {
        run_dir: flat_protocol(last_record(run_dir).get("protocol", {})) for run_dir in run_dirs
    }
    shared = frozenset.intersection(*given.values()) if given else frozenset()
    scored = [p for p in protocols.values() if p]  # runs without scores have no protocol
    keys = sorted({k for p in scored for k in p})
    differing = [k for k in keys if len({p.get(k) for p in scored}) > 1]
    labels = {}
    for run_dir in run_dirs:
        protocol = protocols[run_dir]
        parts = sorted(given[run_dir] - shared) or sorted(given[run_dir])
        parts += [f"eval.{k}={protocol.get(k, '-')}" for k in differing if protocol]
        labels[run_dir] = " ".join(parts) or "(defaults)"
    return labels


def summarize(root: Path, metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per configuration: its number of runs, their seeds, and per metric
    (mean, std, count)."""
    run_dirs = find_runs(root)
    groups: dict[str, list[Path]] = defaultdict(list)
    for run_dir, label in run_labels(run_dirs).items():
        groups[label].append(run_dir)
    scores = {run_dir: final_scores(run_dir) for run_dir in run_dirs}
    names = metrics or sorted({k for s in scores.values() for k in s})
    rows = []
    for config, members in sorted(groups.items()):
        seeds = sorted((run_seed(r) for r in members), key=lambda s: (s is None, str(s)))
        row: dict[str, Any] = {"configuration": config, "runs": len(members), "seeds": seeds}
        for name in names:
            values = [scores[r][name] for r in members if name in scores[r]]
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            row[name] = (statistics.fmean(values) if values else math.nan, std, len(values))
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no finished runs"
    names = [k for k in rows[0] if k not in ("configuration", "runs", "seeds")]
    lines = [
        "| configuration | runs | seeds | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        cells = []
        for name in names:
            mean, std, count = row[name]
            if count == 0:
                cells.append("-")
            else:
                cells.append(f"{mean:.4g}" + (f" ± {std:.2g}" if count > 1 else ""))
        seeds = ", ".join("-" if s is None else str(s) for s in row["seeds"])
        lines.append(
            f"| {row['configuration']} | {row['runs']} | {seeds} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ganlab-summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a sweep directory, or any folder of runs")
    parser.add_argument("--metrics", help="comma-separated score keys (default: all found)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"ganlab-summary: error: {str(args.root)!r} is not a directory", file=sys.stderr)
        return 2
    metrics = args.metrics.split(",") if args.metrics else None
    print(format_table(summarize(args.root, metrics)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

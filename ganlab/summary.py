"""`ganlab-summary DIR`: one table of finished runs, mean ± std across seeds per configuration.

A configuration is what a run's command-line overrides (`.hydra/overrides.yaml`) set apart from
the other runs', seeds aside; a run's scores are the last record of its `metrics.json`.
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

IGNORED_OVERRIDES = ("seed=", "hydra.", "hparams_search=", "callbacks.sample_quality.", "paths.")


def find_runs(root: Path) -> list[Path]:
    """Run directories under `root`: those holding the resolved `config.yaml` of a run."""
    return sorted(p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra")


def overrides(run_dir: Path) -> frozenset[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    given = yaml.safe_load(path.read_text()) if path.is_file() else []
    return frozenset(o for o in given or [] if not o.lstrip("+~").startswith(IGNORED_OVERRIDES))


def final_scores(run_dir: Path) -> dict[str, float]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    history = json.loads(path.read_text())
    return history[-1]["scores"] if history else {}


def summarize(root: Path, metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per configuration: its number of runs, and per metric (mean, std, count)."""
    runs = {run_dir: overrides(run_dir) for run_dir in find_runs(root)}
    shared = frozenset.intersection(*runs.values()) if runs else frozenset()
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for run_dir, given in runs.items():
        groups[" ".join(sorted(given - shared)) or "(all alike)"].append(final_scores(run_dir))
    names = metrics or sorted({k for runs in groups.values() for scores in runs for k in scores})
    rows = []
    for config, runs in sorted(groups.items()):
        row: dict[str, Any] = {"configuration": config, "runs": len(runs)}
        for name in names:
            values = [s[name] for s in runs if name in s]
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            row[name] = (statistics.fmean(values) if values else math.nan, std, len(values))
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no finished runs"
    names = [k for k in rows[0] if k not in ("configuration", "runs")]
    lines = [
        "| configuration | runs | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        cells = []
        for name in names:
            mean, std, count = row[name]
            if count == 0:
                cells.append("-")
            else:
                cells.append(f"{mean:.4g}" + (f" ± {std:.2g}" if count > 1 else ""))
        lines.append(f"| {row['configuration']} | {row['runs']} | " + " | ".join(cells) + " |")
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

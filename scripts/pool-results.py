#!/usr/bin/env python3
"""One table from several per-item result files of the evaluation harness.

A measurement made in parts (`fusion_eval --skip-items`, one file per part) is pooled
here item by item: each system's accuracy with its bootstrap interval, and each
system against the best single model on the items both answered (paired bootstrap of
the difference, exact McNemar test, fixed / broken), with the same statistics as the
harness's own report (evals/stats.py; a single system's interval can differ from the
harness's in its last digit, the resamples being drawn in another item order). Only
items every system has a grade for count.

    scripts/pool-results.py docs/quality/humaneval-*.csv
"""

import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from evals import stats  # noqa: E402  (standard library only: no Django needed)

BASELINE_PREFIX = "Seat 1 alone"


def load(paths: list[str]) -> dict[str, dict[str, dict]]:
    """{system: {item: row}} over every file; an item graded twice keeps its last row."""
    by_system: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["correct"] in ("0", "1"):
                    by_system[row["system"]][row["item"]] = row
    return by_system


def minutes(ms: float) -> str:
    seconds = round(ms / 1000)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def main(paths: list[str]) -> None:
    by_system = load(paths)
    if not by_system:
        sys.exit("no graded rows in " + ", ".join(paths))
    # In the dataset's order (HumanEval/2 before HumanEval/10), as the harness draws
    # its bootstrap resamples, so a single file gives the harness's own intervals.
    shared = set.intersection(*(set(rows) for rows in by_system.values()))
    items = sorted(
        shared, key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]
    )
    baseline = next((s for s in by_system if s.startswith(BASELINE_PREFIX)), None)
    if baseline is None:
        sys.exit(f"no system named {BASELINE_PREFIX!r}… to compare with")
    base = [float(by_system[baseline][i]["correct"]) for i in items]
    print(f"{len(items)} items graded for every system, from {len(paths)} file(s)\n")
    print(
        "| System | Accuracy [95% CI] | Δ vs 1.5B alone [95% CI] | p | Fixed / broken "
        "| Latency mean | Latency median |"
    )
    print("|---|---|---|---|---|---|---|")
    for system, rows in by_system.items():
        grades = [float(rows[i]["correct"]) for i in items]
        latencies = [float(rows[i]["latency_ms"] or 0) for i in items]
        ci = stats.bootstrap_ci(grades)
        accuracy = f"{100 * stats.mean(grades):.1f}% [{100 * ci.low:.1f}, {100 * ci.high:.1f}]"
        if system == baseline:
            delta = p = changed = "baseline"
        else:
            fixed = sum(1 for g, b in zip(grades, base, strict=True) if g > b)
            broken = sum(1 for g, b in zip(grades, base, strict=True) if g < b)
            d = stats.paired_bootstrap_ci(grades, base)
            delta = (
                f"{100 * (stats.mean(grades) - stats.mean(base)):+.1f} pts "
                f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
            )
            p = f"{stats.mcnemar_exact(fixed, broken):.3f}"
            changed = f"{fixed} / {broken} of {len(items)}"
        print(
            f"| {system} | {accuracy} | {delta} | {p} | {changed} "
            f"| {minutes(statistics.fmean(latencies))} | {minutes(statistics.median(latencies))} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

"""scripts/pool-results.py: a measurement made in parts, pooled item by item, gives the
harness's own figures (the part-1 figures below are what `fusion_eval` printed for
docs/quality/humaneval-82.csv, docs/QUALITY.md), and the three parts of HumanEval make
one table of all 164 tasks."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUALITY = ROOT / "docs" / "quality"


def pooled(*names: str) -> str:
    script = ROOT / "scripts" / "pool-results.py"
    files = [str(QUALITY / name) for name in names]
    done = subprocess.run(
        [sys.executable, str(script), *files], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_one_part_gives_the_harness_s_paired_figures():
    table = pooled("humaneval-82.csv")
    assert table.startswith("82 items graded for every system")
    [local] = [line for line in table.splitlines() if line.startswith("| Panel Local")]
    assert "| 81.7% [" in local and "+9.8 pts [+1.2, +18.3] | 0.057 | 11 / 3 of 82 |" in local


def test_the_three_parts_pool_into_all_164_tasks():
    table = pooled("humaneval-82.csv", "humaneval-odd-partial.csv", "humaneval-odd-rest.csv")
    assert table.startswith("164 items graded for every system, from 3 file(s)")
    [local] = [line for line in table.splitlines() if line.startswith("| Panel Local")]
    assert "| 79.9% [" in local and "| 0.007 | 19 / 5 of 164 |" in local

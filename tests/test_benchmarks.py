"""The benchmarks' own bookkeeping (benchmarks/): the tables they write have a
header cell for every cell, a rewrite of docs/PERFORMANCE.md keeps the parts it
does not own, and CPU time counts a process's children, ended ones too."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import overhead  # noqa: E402
import peers  # noqa: E402
import stack  # noqa: E402


def _cells(line: str) -> int:
    return line.strip().strip("|").count("|") + 1


def test_overhead_table_rows_have_as_many_cells_as_its_header():
    level = {
        "overheads": [10, 20],
        "relays": [30.0, 40.0],
        "broken": 0,
        "wall": 1.5,
        "queue": [5, 6],
        "runs": 2,
        "calls": 10,
        "cpu": {"worker": 0.2, "daphne": 0.1},
        "memory": {"worker": 120.0, "daphne": 130.0},
    }
    head, rule, *rows = overhead.report({1: level, 20: level}).splitlines()
    assert len(rows) == 2
    assert {_cells(row) for row in rows} == {_cells(head)} == {_cells(rule)}
    assert rows[0].split("|")[-2].strip() == "0", "the last column is the broken answers"


def test_overhead_says_issue_26_s_targets_met_or_missed():
    def level(overhead_ms: float) -> dict:
        return {"overheads": [overhead_ms] * 3, "relays": [30.0], "broken": 0}

    lines = overhead.verdict({20: level(90), 100: level(900)})
    assert "- overhead p50 at 20 runs: 90 ms (target ≤ 100 ms): **met**" in lines
    assert "- overhead p50 at 100 runs on one worker: 900 ms (target ≤ 800 ms): **MISSED**" in lines
    assert not any("100 runs" in line for line in overhead.verdict({100: level(1)}, workers=2))


def test_peers_table_rows_have_as_many_cells_as_its_header():
    whole = "".join(f"[{t}.5]" for t in range(stack.SEAT_CHUNKS))
    served = peers.PathResult("LiteLLM proxy", cpu_s=0.4)
    served.requests = [peers.Request(ttft_ms=400, end_ms=700, text=whole) for _ in range(4)]
    served.requests.append(peers.Request(ttft_ms=400, end_ms=700, text=whole[:-6]))
    missing = peers.PathResult("LiteLLM proxy", unavailable="pip failed")
    head, rule, *rows = peers.table([served, missing], floor=300).splitlines()
    assert {_cells(row) for row in rows} == {_cells(head)} == {_cells(rule)}
    assert "| +100 |" in rows[0] and "| 80 |" in rows[0]  # added TTFT; 400 ms CPU / 5
    assert rows[0].endswith("| 4 / 5 |"), "a request missing its last chunk is not whole"


def test_a_rewritten_part_leaves_the_rest_of_the_document_as_it_was(tmp_path):
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\nWritten by hand: the profile.\n")
    stack.write_section("peers", "first table", doc)
    stack.write_section("overhead", "overhead table", doc)
    stack.write_section("peers", "second table", doc)
    text = doc.read_text()
    assert "Written by hand: the profile." in text
    assert "second table" in text and "first table" not in text
    assert text.index("second table") < text.index("overhead table"), "kept in its place"
    assert text.count("<!-- begin peers -->") == 1


def test_cpu_time_counts_children_that_already_ended():
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {burn!r}]); "
            "print('done', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "done"
        assert stack.cpu_seconds(parent.pid) >= 0.45
    finally:
        parent.kill()
        parent.wait()


def test_cpu_time_of_a_process_that_is_gone_is_an_error_not_zero():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(OSError):
        stack.cpu_seconds(gone.pid)

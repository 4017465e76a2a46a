"""What an evaluation found: per system, accuracy with its 95% bootstrap CI, the
paired difference to the best single model with its CI and McNemar's exact p (a
sign test for rubric scores), the items it fixed and broke, cost and latency.
As a table (page, command, Markdown), CSV and JSON exports, and an SVG chart.

Only graded results count toward accuracy; errors are counted apart (a system that
failed did not answer wrong, it did not answer). Paired comparisons use the items
both systems have a grade for.

Long on purpose: every figure of one report (accuracy, paired differences, McNemar,
cost, latency) comes from the same per-item table, read once here.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db.models import Q

from core.durations import human_duration

from . import charts, stats
from .harness import items_of
from .models import Dataset, DatasetItem, Evaluation, Result, System


@dataclass
class Cell:
    result: Result | None

    @property
    def state(self) -> str:
        if self.result is None:
            return "pending"
        if self.result.status != Result.Status.GRADED:
            return "error"
        if self.result.correct is None:  # rubric: a score
            return "right" if (self.result.score or 0) >= 0.5 else "wrong"
        return "right" if self.result.correct else "wrong"


@dataclass
class Row:
    system: System
    scores: dict[int, float]  # item id → score, graded only
    errors: int = 0
    accuracy: float | None = None
    ci: stats.Interval | None = None
    is_baseline: bool = False
    paired_n: int = 0
    delta: float | None = None
    delta_ci: stats.Interval | None = None
    p_value: float | None = None
    fixed: int | None = None
    broken: int | None = None
    cost_per_item: Decimal | None = None
    cost_per_correct: Decimal | None = None
    cost_unknown: int = 0
    latency_mean_ms: float | None = None
    latency_p95_ms: float | None = None
    by_category: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.system.label


@dataclass
class Summary:
    evaluation: Evaluation
    rows: list[Row]
    baseline: Row | None
    items: list[DatasetItem]
    grid: list[tuple[DatasetItem, list[Cell]]]

    @property
    def is_rubric(self) -> bool:
        return self.evaluation.dataset.kind == Dataset.Kind.RUBRIC

    @property
    def metric(self) -> str:
        return "Mean score" if self.is_rubric else "Accuracy"


def _score(result: Result) -> float:
    return float(result.score if result.score is not None else bool(result.correct))


def _row(system: System, results: list[Result], categories: dict[int, str]) -> Row:
    graded = [r for r in results if r.status == Result.Status.GRADED]
    row = Row(system, {r.item_id: _score(r) for r in graded})
    row.errors = len(results) - len(graded)
    values = list(row.scores.values())
    row.accuracy, row.ci = stats.mean(values), stats.bootstrap_ci(values)
    costs = [r.cost_usd for r in results if r.cost_usd is not None]
    row.cost_unknown = len(results) - len(costs)
    if costs and not row.cost_unknown:
        total = sum(costs, Decimal(0))
        row.cost_per_item = total / len(results)
        right = sum(values)
        row.cost_per_correct = total / Decimal(right) if right else None
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    row.latency_mean_ms = stats.mean(latencies)
    row.latency_p95_ms = stats.percentile(latencies, 95)
    per: dict[str, list[float]] = {}
    for item_id, score in row.scores.items():
        per.setdefault(categories.get(item_id) or "all", []).append(score)
    row.by_category = {name: stats.mean(v) or 0.0 for name, v in sorted(per.items())}
    return row


def _compare(row: Row, baseline: Row, rubric: bool) -> None:
    shared = sorted(set(row.scores) & set(baseline.scores))
    row.paired_n = len(shared)
    if not shared:
        return
    mine = [row.scores[i] for i in shared]
    theirs = [baseline.scores[i] for i in shared]
    row.delta = (stats.mean(mine) or 0) - (stats.mean(theirs) or 0)
    row.delta_ci = stats.paired_bootstrap_ci(mine, theirs)
    if rubric:
        row.p_value = stats.sign_test([a - b for a, b in zip(mine, theirs, strict=True)])
        return
    counts = stats.paired_counts([a >= 0.5 for a in mine], [b >= 0.5 for b in theirs])
    row.p_value = stats.mcnemar_exact(counts.only_first, counts.only_second)
    row.fixed, row.broken = counts.only_first, counts.only_second


def _best_single(rows: list[Row]) -> Row | None:
    """The best single model: the most accurate on the items every single model has
    a grade for (so a seat that failed on the hard items cannot win on the easy
    ones), then the one that answered more, then the cheaper (an unknown cost counts
    as the dearest), then the first."""
    singles = [r for r in rows if r.system.is_single_model and r.accuracy is not None]
    if not singles:
        return None
    shared = set.intersection(*(set(r.scores) for r in singles))

    def accuracy(row: Row) -> float:
        if not shared:
            return row.accuracy or 0.0
        return stats.mean([row.scores[i] for i in shared]) or 0.0

    def cost(row: Row) -> Decimal:
        return Decimal("Infinity") if row.cost_unknown else row.cost_per_item or Decimal(0)

    return max(singles, key=lambda r: (accuracy(r), len(r.scores), -cost(r), -r.system.position))


_CACHE: dict[tuple, "Summary"] = {}
_CACHE_SIZE = 16


def summarise(evaluation: Evaluation) -> "Summary":
    """The report of an evaluation, computed once per state of its results (the
    bootstrap is thousands of resamples; the page asks again every few seconds)."""
    results = Result.objects.filter(evaluation=evaluation)
    key = (
        evaluation.pk,
        evaluation.created_at,
        evaluation.status,
        results.count(),
        results.order_by("-pk").values_list("pk", flat=True).first(),
    )
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _summarise(evaluation)
    return _CACHE[key]


def _summarise(evaluation: Evaluation) -> Summary:
    systems = list(evaluation.systems.order_by("position"))
    items = items_of(evaluation)
    # Only the evaluation's items (a narrowed item count leaves earlier rows aside).
    results = list(Result.objects.filter(evaluation=evaluation, item__in=items))
    by_system: dict[int, list[Result]] = {s.pk: [] for s in systems}
    lookup: dict[tuple[int, int], Result] = {}
    for result in results:
        by_system.setdefault(result.system_id, []).append(result)
        lookup[(result.system_id, result.item_id)] = result
    categories = {item.pk: item.category for item in items}
    rows = [_row(s, by_system[s.pk], categories) for s in systems]
    baseline = _best_single(rows)
    if baseline is not None:
        baseline.is_baseline = True
        for row in rows:
            if row is not baseline:
                _compare(row, baseline, evaluation.dataset.kind == Dataset.Kind.RUBRIC)
    grid = [(item, [Cell(lookup.get((s.pk, item.pk))) for s in systems]) for item in items]
    return Summary(evaluation, rows, baseline, items, grid)


# ── formatting ────────────────────────────────────────────────────────────────


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def interval(ci: stats.Interval | None, signed: bool = False) -> str:
    if ci is None:
        return ""
    sign = "+" if signed else ""
    return f"[{100 * ci.low:{sign}.1f}, {100 * ci.high:{sign}.1f}]"


def points(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f} pts"


def money(value: Decimal | None, unknown: int = 0) -> str:
    if unknown:
        return f"unknown ({unknown} unpriced)"
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    return f"${value:.6f}" if value < Decimal("0.01") else f"${value:.4f}"


def p_value(value: float | None) -> str:
    if value is None:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return (
        f"{minutes} min {rest:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _duration(ms: float | None) -> str:
    return "—" if ms is None else human_duration(ms)


HEADER = [
    "System",
    "{metric} [95% CI]",
    "Δ vs best single [95% CI]",
    "p",
    "Fixed / broken",
    "Errors",
    "Cost / item",
    "Cost / right",
    "Latency mean / p95",
]


def table_rows(summary: Summary) -> list[list[str]]:
    rows = []
    for row in summary.rows:
        name = row.label + (" ★ best single" if row.is_baseline else "")
        rows.append(
            [
                name,
                f"{pct(row.accuracy)} {interval(row.ci)}".strip(),
                "baseline"
                if row.is_baseline
                else f"{points(row.delta)} {interval(row.delta_ci, True)}".strip(),
                "" if row.is_baseline else p_value(row.p_value),
                "" if row.fixed is None else f"{row.fixed} / {row.broken} of {row.paired_n}",
                str(row.errors),
                money(row.cost_per_item, row.cost_unknown),
                money(row.cost_per_correct, row.cost_unknown),
                f"{_duration(row.latency_mean_ms)} / {_duration(row.latency_p95_ms)}",
            ]
        )
    return rows


def labelled_rows(summary: Summary) -> list[list[tuple[str, str]]]:
    """The table's cells with their column names (a phone shows them as labels)."""
    names = header(summary)
    return [list(zip(names, cells, strict=True)) for cells in table_rows(summary)]


def header(summary: Summary) -> list[str]:
    return [h.format(metric=summary.metric) for h in HEADER]


def markdown_table(summary: Summary) -> str:
    lines = ["| " + " | ".join(header(summary)) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(summary)]
    done = sum(1 for _, cells in summary.grid for c in cells if c.result is not None)
    total = len(summary.grid) * len(summary.rows)
    note = (
        f"{len(summary.items)} items of {summary.evaluation.dataset.name}"
        f" ({done}/{total} runs finished). p: "
        + ("paired sign test" if summary.is_rubric else "exact McNemar")
        + " against the best single model; fixed / broken: items it got right where that"
        " model was wrong / wrong where that model was right."
    )
    return "\n".join(lines) + "\n\n" + note


def category_table(summary: Summary) -> str:
    names = sorted({name for row in summary.rows for name in row.by_category})
    lines = ["| System | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for row in summary.rows:
        lines.append(
            f"| {row.label} | " + " | ".join(pct(row.by_category.get(n)) for n in names) + " |"
        )
    return "\n".join(lines)


def _cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (or a tab
    or carriage return) would be run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def results_csv(summary: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "item",
            "category",
            "system",
            "status",
            "correct",
            "score",
            "answer",
            "error",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "latency_ms",
            "run_id",
        ]
    )
    systems = [row.system for row in summary.rows]
    for item, cells in summary.grid:
        for system, cell in zip(systems, cells, strict=True):
            r = cell.result
            if r is None:
                row = [item.key, item.category, system.label, "pending"] + [""] * 9
                writer.writerow([_cell(v) for v in row])
                continue
            writer.writerow(
                _cell(v)
                for v in [
                    item.key,
                    item.category,
                    system.label,
                    r.status,
                    "" if r.correct is None else int(r.correct),
                    "" if r.score is None else r.score,
                    r.answer,
                    r.error,
                    r.input_tokens or "",
                    r.output_tokens or "",
                    "" if r.cost_usd is None else format(r.cost_usd.normalize(), "f"),
                    r.latency_ms or "",
                    r.run_id or "",
                ]
            )
    return out.getvalue()


def _interval_json(ci: stats.Interval | None):
    return None if ci is None else [ci.low, ci.high]


def as_json(summary: Summary) -> dict:
    evaluation = summary.evaluation
    return {
        "evaluation": {
            "id": evaluation.pk,
            "name": evaluation.name,
            "status": evaluation.status,
            "dataset": evaluation.dataset.slug,
            "items": len(summary.items),
            "created": evaluation.created_at.isoformat(),
        },
        "systems": [
            {
                "label": row.label,
                "kind": row.system.kind,
                "config": row.system.config,
                "graded": len(row.scores),
                "errors": row.errors,
                "accuracy": row.accuracy,
                "accuracy_ci": _interval_json(row.ci),
                "baseline": row.is_baseline,
                "delta": row.delta,
                "delta_ci": _interval_json(row.delta_ci),
                "p_value": row.p_value,
                "paired_items": row.paired_n,
                "fixed": row.fixed,
                "broken": row.broken,
                "cost_per_item_usd": None if row.cost_per_item is None else str(row.cost_per_item),
                "cost_per_correct_usd": None
                if row.cost_per_correct is None
                else str(row.cost_per_correct),
                "latency_mean_ms": row.latency_mean_ms,
                "latency_p95_ms": row.latency_p95_ms,
                "by_category": row.by_category,
            }
            for row in summary.rows
        ],
    }


def write(summary: Summary, out: Path, command: str) -> list[Path]:
    """The report's files: Markdown (the command that made it above the tables),
    every result as CSV, the summary as JSON, the chart as SVG."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "report.md": f"```\n{command}\n```\n\n{markdown_table(summary)}\n\n"
        f"By category:\n\n{category_table(summary)}\n",
        "results.csv": results_csv(summary),
        "summary.json": json.dumps(as_json(summary), indent=2, default=str),
        "scatter.svg": charts.scatter(summary),
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def panel_evidence(panel, viewer) -> list[dict]:
    """A saved panel's latest finished measurement per dataset, as saved (its own
    strategy): the viewer's own evaluations, and its owner's on the shipped datasets
    (anyone may see those; an owner's own questions stay theirs)."""
    mine = Q(evaluation__owner_id=viewer.pk)
    owners = Q(evaluation__owner_id=panel.owner_id, evaluation__dataset__owner=None)
    found = (
        System.objects.filter(
            mine | owners if panel.owner_id else mine,
            panel=panel,
            evaluation__status=Evaluation.Status.DONE,
        )
        .select_related("evaluation__dataset")
        .order_by("-evaluation__finished_at")
    )
    evidence, seen = [], set()
    for system in found[:20]:
        if system.evaluation.dataset_id in seen:
            continue
        seen.add(system.evaluation.dataset_id)
        summary = summarise(system.evaluation)
        row = next(r for r in summary.rows if r.system.pk == system.pk)
        evidence.append(
            {
                "evaluation": system.evaluation,
                "dataset": system.evaluation.dataset,
                "items": len(summary.items),
                "accuracy": f"{pct(row.accuracy)} {interval(row.ci)}".strip(),
                "delta": None
                if row.delta is None
                else f"{points(row.delta)} {interval(row.delta_ci, True)}",
                "baseline": summary.baseline.label if summary.baseline else None,
                "cost": money(row.cost_per_item, row.cost_unknown),
                "version": system.panel_version,
                "when": system.evaluation.finished_at,
            }
        )
    return evidence

"""A run's trace: every call on one time axis, drawn as an SVG by the template."""

from dataclasses import dataclass

from .models import Answer, Run

WIDTH = 760  # drawing width of the time axis, in SVG units
ROW = 34


@dataclass
class Segment:
    x: float
    width: float
    kind: str  # answered | failed | skipped | cancelled | waiting
    title: str


@dataclass
class Row:
    y: int
    label: str
    answer: Answer
    segments: list[Segment]
    first_token_x: float | None


def build(run: Run) -> dict:
    answers = [a for a in run.answers.all() if a.started_ms is not None or a.attempts]
    total = max(
        [run.stage_ms.get("total") or 0]
        + [(a.started_ms or 0) + (a.latency_ms or 0) for a in answers]
        + [s.get("started_ms", 0) + s["latency_ms"] for a in answers for s in a.tool_steps]
        + [1]
    )
    scale = WIDTH / total

    def x(ms: float) -> float:
        return round(ms * scale, 1)

    rows = []
    for index, answer in enumerate(answers):
        start = answer.started_ms or 0
        segments = []
        for attempt in answer.attempts:
            begin = start + (attempt.get("started_ms") or 0)
            end = start + (attempt.get("ended_ms") or attempt.get("started_ms") or 0)
            if attempt.get("waited_s"):
                wait = attempt["waited_s"] * 1000
                segments.append(
                    Segment(
                        x(begin - wait), x(wait), "waiting", f"backoff {attempt['waited_s']:.1f} s"
                    )
                )
            error = (attempt.get("error") or {}).get("message", "")
            title = f"{attempt['model']}: {attempt['outcome']}" + (f" ({error})" if error else "")
            segments.append(Segment(x(begin), max(x(end - begin), 2), attempt["outcome"], title))
        for step in answer.tool_steps:
            if "started_ms" in step:
                what = f"{step['name']}: {step['preview']}" + (
                    f" ({step['error']})" if step["error"] else ""
                )
                segments.append(
                    Segment(
                        x(step["started_ms"]),
                        max(x(step["latency_ms"]), 2),
                        "tool-failed" if step["error"] else "tool",
                        what,
                    )
                )
        first = None
        if answer.first_token_ms is not None:
            first = x(start + answer.first_token_ms)
        role = {
            "seat": f"Seat {answer.position + 1}",
            "router": "Router",
            "judge": "Judge",
            "synthesizer": "Synthesis",
        }[answer.role]
        rows.append(Row(20 + index * ROW, f"{role}: {answer.model_name}", answer, segments, first))
    ticks = [(x(ms), f"{ms / 1000:g} s") for ms in range(0, int(total) + 1, _tick(total))]
    decisions = [
        {"x": x(d["ms"]), "ms": d["ms"], "stage": d["stage"], "summary": d["summary"]}
        for d in run.decisions
    ]
    return {
        "decisions": decisions,
        "rows": rows,
        "ticks": ticks,
        "width": WIDTH,
        "height": 40 + len(rows) * ROW,
        "total_ms": total,
    }


def _tick(total_ms: float) -> int:
    for step in (100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000):
        if total_ms / step <= 10:
            return step
    return 120_000

"""The conversation's events, built in one place: what the browser's `static/js/conversation.js`
reads, and the snapshot a (re)connecting browser is made whole from. The TypedDicts
are the written contract; the JavaScript follows them, and the API's shapes reuse
the ones they show (a `Decision`). Cost totals are counted here too, so the conversation,
the run row and the doors never disagree about what a run cost.

Each door owns its own response shape: the API's `fusion` extension and usage in
chat/api/run_result.py, the MCP tool's result in chat/api/mcp_server.py, the CLI's
JSON in the `fusion` command.
"""

from decimal import Decimal
from typing import Annotated, Literal, NotRequired, TypedDict

from chat.models import Answer, Run

from . import live
from .db import in_db

RECENT_RUNS = 3

# --- costs ------------------------------------------------------------------------


def charged(answers: list[Answer]) -> list[Answer]:
    """Calls that produced tokens cost something (known or not); one refused before
    any token (a 500, a bad key) is not charged, nor is a draft written by the judge."""
    return [a for a in answers if a.attempts and a.input_tokens is not None]


def cost_of(answers: list[Answer]) -> Decimal | None:
    """The summed cost of the charged calls among `answers`; None when any is unknown."""
    costs = [a.cost_usd for a in charged(answers)]
    if any(c is None for c in costs):
        return None
    return sum((c for c in costs if c is not None), Decimal(0))


def solo_cost_of(answers: list[Answer]) -> Decimal | None:
    """What the most expensive seat alone cost: the price of not fusing."""
    seats = [a.cost_usd for a in charged(answers) if a.role == Answer.Role.SEAT]
    if not seats or any(c is None for c in seats):
        return None
    return max(c for c in seats if c is not None)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# --- conversation events ------------------------------------------------------------------


class AnswerStats(TypedDict):
    cost: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    tokens_estimated: bool
    first_token_ms: int | None
    latency_ms: int | None


class SeatRef(TypedDict):
    answer: int
    role: str
    model: str


class RunStarted(TypedDict):
    type: Literal["run.started"]
    run: int
    status: str
    answers: list[SeatRef]


class RunStatus(TypedDict):
    type: Literal["run.status"]
    run: int
    status: str


class AnswerCreated(TypedDict):
    type: Literal["answer.created"]
    run: int
    answer: int
    role: str


class AnswerStarted(TypedDict):
    type: Literal["answer.started"]
    run: int
    answer: int
    role: str
    model: str


class AnswerDelta(TypedDict):
    type: Literal["answer.delta"]
    run: int
    answer: int
    seq: int
    text: str


class AnswerEnded(TypedDict):
    type: Literal["answer.done", "answer.failed"]
    run: int
    answer: int
    role: str
    seq: int
    status: str
    html: str
    error: str
    stats: AnswerStats


class AnalysisReady(TypedDict):
    type: Literal["analysis.ready"]
    run: int
    structured: bool
    analysis: dict | None
    raw: str


# The strategies' stages that decide something (chat/engine/strategies/).
# "consult": one model called the fusion server tool (chat/engine/fusion_tool.py).
DECISION_STAGES = ("route", "vote", "gate", "escalate", "consult")


class Decision(TypedDict):
    """One automatic decision of a strategy, explained after the fact."""

    stage: Annotated[str, {"enum": list(DECISION_STAGES)}]
    # What a person reads: "Vote 3–1 for 42, confidence 0.75".
    summary: Annotated[str, {"description": "The decision in words."}]
    ms: Annotated[int, {"description": "When, in ms after the run started."}]
    # Tally, confidence, categories, savings.
    detail: Annotated[dict, {"description": "The numbers behind it."}]


class DecisionMade(TypedDict):
    type: Literal["decision"]
    run: int
    decision: Decision


class RunSummary(TypedDict):
    run: int
    status: str
    failure_reason: str
    failure_detail: str
    analysis: dict | None
    analysis_structured: bool
    cost: str | None
    solo_cost: str | None
    stage_ms: dict
    strategy: str
    decisions: list[Decision]


class RunDone(TypedDict):
    type: Literal["run.done"]
    run: int
    status: str
    failure_reason: str
    failure_detail: str
    cost: NotRequired[str | None]
    solo_cost: NotRequired[str | None]
    stage_ms: NotRequired[dict]


def answer_stats(answer: Answer) -> AnswerStats:
    return {
        "cost": answer.cost_display,
        "model": answer.model_name,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "tokens_estimated": answer.tokens_estimated,
        "first_token_ms": answer.first_token_ms,
        "latency_ms": answer.latency_ms,
    }


def run_started(run: Run, seats: list[Answer]) -> RunStarted:
    answers: list[SeatRef] = [
        {"answer": a.pk, "role": a.role, "model": a.model_name} for a in seats
    ]
    return {"type": "run.started", "run": run.pk, "status": run.status, "answers": answers}


def run_status(run: Run) -> RunStatus:
    return {"type": "run.status", "run": run.pk, "status": run.status}


def answer_created(answer: Answer) -> AnswerCreated:
    return {
        "type": "answer.created",
        "run": answer.run_id,
        "answer": answer.pk,
        "role": answer.role,
    }


def answer_started(answer: Answer) -> AnswerStarted:
    return {
        "type": "answer.started",
        "run": answer.run_id,
        "answer": answer.pk,
        "role": answer.role,
        "model": answer.model_name,
    }


def answer_delta(answer: Answer, seq: int, text: str) -> AnswerDelta:
    return {
        "type": "answer.delta",
        "run": answer.run_id,
        "answer": answer.pk,
        "seq": seq,
        "text": text,
    }


def answer_ended(answer: Answer, seq: int) -> AnswerEnded:
    return {
        "type": "answer.done" if answer.status == Answer.Status.DONE else "answer.failed",
        "run": answer.run_id,
        "answer": answer.pk,
        "role": answer.role,
        "seq": seq,
        "status": answer.status,
        "html": answer.body_html,  # rendered when the answer was saved
        "error": answer.error,
        "stats": answer_stats(answer),
    }


class ToolStep(TypedDict):
    """One tool call of an answer, as saved on it and shown in its column."""

    id: str
    name: str
    arguments: str  # as the model wrote them, cut to 500 characters
    preview: str  # "“query” → 5 results", "fetched example.org/page, 12 kB"
    sources: list[dict]  # [{"title", "url"}]
    error: str
    latency_ms: int
    cost: str  # USD
    output: str  # what the model read, cut to 1,000 characters
    started_ms: NotRequired[int]  # after the run started


class ToolStarted(TypedDict):
    type: Literal["tool.started"]
    run: int
    answer: int
    id: str
    name: str
    arguments: str


class ToolDone(TypedDict):
    type: Literal["tool.done"]
    run: int
    answer: int
    step: ToolStep


def tool_step(call_id: str, name: str, arguments: str, result, latency_ms: int) -> ToolStep:
    return {
        "id": call_id,
        "name": name,
        "arguments": arguments[:500],
        "preview": result.preview,
        "sources": result.sources[:10],
        "error": result.error,
        "latency_ms": latency_ms,
        "cost": str(result.cost_usd),
        "output": result.text[:1000],
    }


def tool_started(answer: Answer, call_id: str, name: str, arguments: str) -> ToolStarted:
    return {
        "type": "tool.started",
        "run": answer.run_id,
        "answer": answer.pk,
        "id": call_id,
        "name": name,
        "arguments": arguments[:500],
    }


def tool_done(answer: Answer, step: ToolStep) -> ToolDone:
    return {"type": "tool.done", "run": answer.run_id, "answer": answer.pk, "step": step}


def analysis_ready(run: Run) -> AnalysisReady:
    return {
        "type": "analysis.ready",
        "run": run.pk,
        "structured": run.analysis_structured,
        "analysis": run.analysis,
        "raw": "" if run.analysis_structured else run.analysis_raw,
    }


def decision(stage: str, summary: str, ms: int, detail: dict) -> Decision:
    return {"stage": stage, "summary": summary, "ms": ms, "detail": detail}


def decision_made(run: Run, made: Decision) -> DecisionMade:
    return {"type": "decision", "run": run.pk, "decision": made}


def run_summary(run: Run) -> RunSummary:
    return {
        "run": run.pk,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "failure_detail": run.failure_detail,
        "analysis": run.analysis,
        "analysis_structured": run.analysis_structured,
        "cost": _money(run.cost_usd),
        "solo_cost": _money(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
        "strategy": run.strategy,
        "decisions": run.decisions,
    }


def run_done(run: Run) -> RunDone:
    return {
        "type": "run.done",
        "run": run.pk,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "failure_detail": run.failure_detail,
        "cost": _money(run.cost_usd),
        "solo_cost": _money(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
    }


def run_closed(run_id: int, status: str, reason: str, detail: str) -> RunDone:
    """A run closed from outside its worker (a crash, a lost worker): no totals."""
    return {
        "type": "run.done",
        "run": run_id,
        "status": status,
        "failure_reason": reason,
        "failure_detail": detail,
    }


# --- the snapshot -------------------------------------------------------------------


def _recent_runs(conversation_id: int) -> list[Run]:
    runs = Run.objects.filter(message__conversation_id=conversation_id).prefetch_related("answers")
    recent = list(runs.order_by("-pk")[:RECENT_RUNS])
    active = runs.filter(status__in=Run.ACTIVE).exclude(pk__in=[r.pk for r in recent])
    found = recent + list(active)
    for run in found:
        for answer in run.answers.all():
            answer.fill_html()  # here, in the database thread, never on the loop
    return found


async def conversation_snapshot(redis, conversation_id: int) -> dict:
    """What a (re)connecting browser needs to be whole again: the recent runs of a
    conversation, each answer's text so far and the sequence number it is at, the analysis
    and the totals."""
    runs = await in_db(_recent_runs, conversation_id)
    payload = []
    for run in runs:
        answers = []
        for answer in run.answers.all():
            item: dict = {
                "answer": answer.pk,
                "role": answer.role,
                "model": answer.model_name,
                "status": answer.status,
                "error": answer.error,
            }
            if answer.is_live:
                item["text"], item["seq"], item["tools"] = await live.snapshot_state(
                    redis, answer.pk
                )
                if item["text"]:
                    item["status"] = "streaming"  # the database only learns the outcome
            else:
                item["html"] = answer.body_html
                item["stats"] = answer_stats(answer)
                item["seq"] = 0
            answers.append(item)
        payload.append({**run_summary(run), "answers": answers})
    return {"type": "snapshot", "runs": payload}

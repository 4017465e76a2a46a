"""What the API tells of a finished run, beside the final answer: the `fusion`
extension (what the panel did) and the usage with what it cost.

The TypedDicts are the written contract: the OpenAPI document's schemas for them
are derived from these types (chat/api/openapi.py), so the two cannot drift. Costs
are counted by the engine (chat/engine/events.py `cost_of`), so the conversation, the run's
row and the API agree about what a run cost.
"""

from decimal import Decimal
from typing import Annotated, NotRequired, TypedDict

from chat.engine import analysis
from chat.engine.events import Decision, cost_of
from chat.engine.strategies import STRATEGIES
from chat.models import Answer, Run


class TokenUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ServerToolUse(TypedDict):
    fusion_requests: int
    web_search_requests: int
    web_fetch_requests: int


class Usage(TokenUsage):
    cost: float | None  # USD; null when a call's price is unknown
    server_tool_use: NotRequired[
        Annotated[ServerToolUse, {"description": "With server tools: how often they ran."}]
    ]


class SeatResult(TypedDict):
    model: str
    status: str
    answer: str
    error: str | None
    usage: TokenUsage
    cost: float | None


# The analysis a run keeps (labels A, B, …), or null when the judge gave none.
_ANALYSIS = {**analysis.kept_schema(), "type": ["object", "null"]}


class FusionResult(TypedDict):
    run: int
    panel: dict | None
    status: str
    failure_reason: str | None
    failed_models: list[str]
    seats: list[SeatResult]
    analysis: Annotated[dict | None, _ANALYSIS]
    cost: float | None
    cost_of_most_expensive_seat: float | None
    stage_ms: dict
    strategy: Annotated[str, {"enum": list(STRATEGIES), "description": "How the panel answered."}]
    decisions: Annotated[
        list[Decision], {"description": "Every automatic decision of the strategy, in order."}
    ]


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def usage_of(answers: list[Answer]) -> TokenUsage:
    prompt = sum(a.input_tokens or 0 for a in answers)
    completion = sum(a.output_tokens or 0 for a in answers)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _seat(answer: Answer) -> SeatResult:
    return {
        "model": answer.model_name,
        "status": answer.status,
        "answer": answer.text,
        "error": answer.error or None,
        "usage": usage_of([answer]),
        "cost": _float(cost_of([answer])),
    }


def fusion(run: Run) -> FusionResult:
    """The API's `fusion` extension: what the panel did, beside the final answer."""
    answers = list(run.answers.all())
    seats = [a for a in answers if a.role == Answer.Role.SEAT]
    return {
        "run": run.pk,
        "panel": run.config.get("panel"),
        "status": run.status,
        "failure_reason": run.failure_reason or None,
        "failed_models": [
            a.model_name for a in seats if a.status in (Answer.Status.FAILED, Answer.Status.LATE)
        ],
        "seats": [_seat(a) for a in seats],
        "analysis": run.analysis,
        "cost": _float(cost_of(answers)),
        "cost_of_most_expensive_seat": _float(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
        "strategy": run.strategy,
        "decisions": run.decisions,
    }


def usage(run: Run) -> Usage:
    answers = list(run.answers.all())
    counted: Usage = {**usage_of(answers), "cost": _float(cost_of(answers))}
    if run.config.get("server_tools"):
        counted["server_tool_use"] = server_tool_use(answers)
    return counted


def server_tool_use(answers: list[Answer]) -> ServerToolUse:
    """How often the server's tools ran for this run: the model's fusion calls, and
    every search and fetch, the panel's included."""
    names = [step["name"] for answer in answers for step in answer.tool_steps]
    return {
        "fusion_requests": names.count("fusion"),
        "web_search_requests": names.count("web_search"),
        "web_fetch_requests": names.count("web_fetch"),
    }

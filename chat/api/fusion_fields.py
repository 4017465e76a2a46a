"""OpenRouter Fusion's response fields, read from a finished run: `analysis`,
`responses`, `failed_models` and `failure_reason` at the top level of a
chat.completion, beside our own `fusion` extension (docs/OPENROUTER_FUSION.md).

Our judge names answers by anonymised labels (A, B, …) and the run keeps which
answer each label was (`analysis["labels"]`); the hosted service names models, so
every label is turned back into the model that wrote that answer.

The TypedDicts are the fields' contract; the OpenAPI document derives its schemas
from them.
"""

import json
from typing import Annotated, Literal, NotRequired, TypedDict

from chat.models import Answer, Run
from panels.providers.base import ErrorKind

FIELDS = ("analysis", "responses", "failed_models", "failure_reason")

FailureReason = Literal[
    "all_panels_failed",
    "insufficient_credits",
    "rate_limited",
    "judge_not_valid_json",
    "judge_schema_mismatch",
    "judge_upstream_error",
    "judge_empty_completion",
    "judge_runaway",
]


class Stance(TypedDict):
    model: str
    stance: str


class Contradiction(TypedDict):
    topic: str
    stances: list[Stance]
    verdict: Annotated[str, {"description": "Extension: who is right."}]


class PartialCoverage(TypedDict):
    point: str
    models: list[str]


class UniqueInsight(TypedDict):
    model: str
    insight: str


class HostedAnalysis(TypedDict):
    consensus: list[str]
    contradictions: list[Contradiction]
    partial_coverage: list[PartialCoverage]
    unique_insights: list[UniqueInsight]
    blind_spots: list[str]


class PanelResponse(TypedDict):
    model: str
    content: str


class FailedModel(TypedDict):
    model: str
    error: str
    status_code: NotRequired[int]


class HostedFields(TypedDict):
    analysis: Annotated[
        HostedAnalysis | None,
        {
            "description": "The judge's analysis, answers named by model id; null when the "
            "judge gave none (see failure_reason)."
        },
    ]
    responses: Annotated[
        list[PanelResponse],
        {"description": "The panel models that answered, and what they said."},
    ]
    failed_models: Annotated[
        list[FailedModel], {"description": "The panel models that did not answer, and why."}
    ]
    failure_reason: Annotated[
        FailureReason | None,
        {"description": "Why the run failed, or why the judge gave no analysis."},
    ]


# Our reasons, as the hosted service's enumeration names them. A reason missing
# here (a cancel, a lost worker, a failed synthesis) has no name there: null.
_REASONS: dict[str, FailureReason] = {
    Run.Failure.ALL_SEATS_FAILED: "all_panels_failed",
    Run.Failure.BUDGET: "insufficient_credits",
    Run.Failure.JUDGE_UPSTREAM_ERROR: "judge_upstream_error",
    Run.Failure.JUDGE_EMPTY: "judge_empty_completion",
    # Ours, beside the hosted service's: cut off at its token allowance, its deadline or
    # a loop. Named apart from judge_not_valid_json, which says the judge finished
    # writing something that was not the analysis.
    Run.Failure.JUDGE_RUNAWAY: "judge_runaway",
}


def fields(run: Run) -> HostedFields | dict:
    """The hosted service's fields for a panel's run; none for a model alone."""
    if not run.is_fusion:
        return {}
    seats = run.seat_answers
    model_of = {a.pk: a.model_key for a in run.answers.all()}
    return {
        "analysis": analysis(run.analysis, model_of) if run.analysis_structured else None,
        "responses": [
            {"model": a.model_key, "content": a.text}
            for a in seats
            if a.status == Answer.Status.DONE
        ],
        "failed_models": [
            _failed(a) for a in seats if a.status in (Answer.Status.FAILED, Answer.Status.LATE)
        ],
        "failure_reason": failure_reason(run),
    }


def analysis(ours: dict | None, model_of: dict[int, str]) -> HostedAnalysis | None:
    """Our judge's analysis in the hosted service's shape, labels made model ids."""
    if not ours:
        return None
    labels = ours.get("labels") or {}

    def model(label: str) -> str:
        answer_id = labels.get(label)
        return model_of.get(answer_id, label) if isinstance(answer_id, int) else label

    return {
        "consensus": list(ours.get("consensus", [])),
        "contradictions": [
            {
                "topic": item["point"],
                "stances": [
                    {"model": model(label), "stance": stance}
                    for label, stance in item["positions"].items()
                ],
                "verdict": item["verdict"],  # ours: which stance the judge found right
            }
            for item in ours.get("contradictions", [])
        ],
        "partial_coverage": [
            {"point": item["point"], "models": [model(label) for label in item["labels"]]}
            for item in ours.get("partial_coverage", [])
        ],
        "unique_insights": [
            {"model": model(item["label"]), "insight": item["insight"]}
            for item in ours.get("unique_insights", [])
        ],
        "blind_spots": list(ours.get("blind_spots", [])),
    }


def failure_reason(run: Run) -> FailureReason | None:
    """Why the run failed, or why its judge gave no analysis, in the hosted
    service's words; None when neither happened or the reason has no name there."""
    reason = run.failure_reason
    if reason == Run.Failure.ALL_SEATS_FAILED:
        tried = [a for a in run.seat_answers if a.status != Answer.Status.SKIPPED]
        if tried and all(a.error_kind == ErrorKind.RATE_LIMITED for a in tried):
            return "rate_limited"
    if reason:
        return _REASONS.get(reason)
    if run.status == Run.Status.DONE and not run.analysis_structured and run.analysis_raw:
        # The judge answered, and neither it nor its repair became a valid analysis:
        # JSON of the wrong shape, or no JSON at all.
        valid_json = _is_json_object(run.analysis_raw)
        return "judge_schema_mismatch" if valid_json else "judge_not_valid_json"
    return None


def _is_json_object(text: str) -> bool:
    start, end = text.find("{"), text.rfind("}")
    try:
        return isinstance(json.loads(text[start : end + 1]), dict) if start >= 0 else False
    except ValueError:
        return False


def _failed(answer: Answer) -> FailedModel:
    failed: FailedModel = {"model": answer.model_key, "error": answer.error or answer.status}
    last = (answer.attempts or [{}])[-1]
    status = (last.get("error") or {}).get("status")
    if isinstance(status, int):
        failed["status_code"] = status
    return failed

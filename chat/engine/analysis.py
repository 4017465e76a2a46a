"""The judge's analysis, written once: its shape (the TypedDicts below), the JSON
schema derived from them (for servers that constrain their output to it, and for
the API's OpenAPI document), and how the judge's reply is read and checked.

The judge names answers by the labels it saw (A, B, …); the run keeps which answer
each label was beside the analysis (`labels`), and a judge asked for drafts adds
its `draft`. The judge's prompt (chat/engine/prompts.py) spells the same keys out
in words for models that cannot be constrained; tests/test_prompts.py holds the two
together.
"""

import json
import re
from typing import Annotated, Any, TypedDict

from core.json_schema import json_schema


class Contradiction(TypedDict):
    point: str
    positions: dict[str, str]  # label → what that answer says
    verdict: str  # which position is right, and why


class UniqueInsight(TypedDict):
    label: str
    insight: str


class PartialCoverage(TypedDict):
    """A point only some answers covered (not all, as consensus; not one, as an insight)."""

    point: str
    labels: list[str]  # the answers that covered it


class ErrorFound(TypedDict):
    """A factual or logical error in one answer."""

    label: str
    error: str


class Score(TypedDict):
    label: str
    score: Annotated[int, {"minimum": 1, "maximum": 10}]
    reason: str


class JudgeReply(TypedDict):
    """The JSON object the judge replies with."""

    consensus: list[str]  # points most answers agree on
    contradictions: list[Contradiction]
    partial_coverage: list[PartialCoverage]
    unique_insights: list[UniqueInsight]
    blind_spots: list[str]  # what every answer missed
    errors: list[ErrorFound]
    scores: list[Score]  # every answer, once


# The judge's reply as a schema (llama.cpp turns it into a grammar).
ANALYSIS_SCHEMA = json_schema(JudgeReply)


def kept_schema() -> dict:
    """The analysis a run keeps, as the API shows it: the judge's reply as read
    (a score kept to one decimal, so a number), which answer each label was, the
    judge's draft when it was asked for one, and the code it ran to check them."""
    schema = json.loads(json.dumps(ANALYSIS_SCHEMA))
    schema["properties"]["scores"]["items"]["properties"]["score"]["type"] = "number"
    schema["properties"]["labels"] = {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "description": "Which answer each label was.",
    }
    schema["properties"]["draft"] = {"type": "string"}
    schema["properties"]["checks"] = {
        "type": "string",
        "description": "Code the judge ran to check the answers, and what it printed.",
    }
    return schema


def analysis_schema(known_labels: list[str], drafts: bool) -> dict:
    """The schema for this run, for servers that constrain their output to it
    (llama.cpp turns it into a grammar): labels are the run's, one score each."""
    schema = json.loads(json.dumps(ANALYSIS_SCHEMA))
    label = {"type": "string", "enum": known_labels}
    properties = schema["properties"]
    for key in ("unique_insights", "errors", "scores"):
        properties[key]["items"]["properties"]["label"] = label
    properties["partial_coverage"]["items"]["properties"]["labels"]["items"] = label
    properties["scores"]["minItems"] = properties["scores"]["maxItems"] = len(known_labels)
    properties["consensus"]["maxItems"] = properties["blind_spots"]["maxItems"] = 6
    if drafts:
        properties["draft"] = {"type": "string"}
        schema["required"].append("draft")
    return schema


class AnalysisError(ValueError):
    """The judge's reply is not the analysis asked for; the message says what is wrong
    (the judge is asked once to repair it)."""


def _list_of(data: dict, key: str, item_type) -> list:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
        raise AnalysisError(f'"{key}" must be a list of {item_type.__name__}s')
    return value


def _reply_object(text: str) -> dict:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise AnalysisError("no JSON object found")
    try:
        data = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise AnalysisError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AnalysisError("the reply is not a JSON object")
    return data


def _contradictions(data: dict, known_labels: list[str]) -> list[Contradiction]:
    read: list[Contradiction] = []
    for item in _list_of(data, "contradictions", dict):
        positions = item.get("positions") or {}
        if not isinstance(positions, dict):
            raise AnalysisError('"positions" must map labels to what each answer says')
        read.append(
            {
                "point": str(item.get("point", "")),
                "positions": {k: str(v) for k, v in positions.items() if k in known_labels},
                "verdict": str(item.get("verdict", "")),
            }
        )
    return read


def _partial_coverage(data: dict, known_labels: list[str]) -> list[dict[str, Any]]:
    """Points only some answers covered; a judge that leaves the key out (an older
    prompt, a model that forgot it) reports none."""
    read = []
    for item in _list_of(data, "partial_coverage", dict):
        labels = item.get("labels") or []
        if not isinstance(labels, list):
            raise AnalysisError('"labels" of a partly covered point must list answer labels')
        kept = [label for label in labels if label in known_labels]
        if kept:
            read.append({"point": str(item.get("point", "")), "labels": kept})
    return read


def _scores(data: dict, known_labels: list[str]) -> list[dict[str, Any]]:
    scores: list[dict[str, Any]] = []
    seen = set()
    for item in _list_of(data, "scores", dict):
        label, score = item.get("label"), item.get("score")
        if label not in known_labels or label in seen:
            continue
        if not isinstance(score, int | float) or not 1 <= score <= 10:
            raise AnalysisError(f"the score of answer {label} must be a number from 1 to 10")
        seen.add(label)
        scores.append(
            {"label": label, "score": round(float(score), 1), "reason": str(item.get("reason", ""))}
        )
    if not scores:
        raise AnalysisError('"scores" must score the answers by their labels')
    return scores


def parse_analysis(text: str, known_labels: list[str], drafts: bool = False) -> dict:
    """The judge's JSON, validated; raises AnalysisError saying what is wrong."""
    data = _reply_object(text)
    analysis: dict[str, Any] = {
        "consensus": [str(p) for p in _list_of(data, "consensus", str)],
        "blind_spots": [str(p) for p in _list_of(data, "blind_spots", str)],
        "contradictions": _contradictions(data, known_labels),
        "partial_coverage": _partial_coverage(data, known_labels),
        "unique_insights": [],
        "errors": [],
        "scores": [],
    }
    for key, field in (("unique_insights", "insight"), ("errors", "error")):
        for item in _list_of(data, key, dict):
            if item.get("label") in known_labels:
                analysis[key].append({"label": item["label"], field: str(item.get(field, ""))})
    analysis["scores"] = _scores(data, known_labels)
    if drafts:
        draft = data.get("draft")
        if not isinstance(draft, str) or not draft.strip():
            raise AnalysisError('"draft" must hold the final answer')
        analysis["draft"] = draft
    return analysis


# --- the consensus, checked against the answers --------------------------------------

# What a point can be checked by in an answer's text: a number, or a capitalised word
# past the point's first (a name). Words the question itself uses are no evidence.
_ANCHOR = re.compile(r"\d[\d,]*(?:\.\d+)?|(?<=\s)[A-Z][A-Za-z'-]{2,}")


def _anchors(point: str, question: str) -> set[str]:
    asked = question.lower()
    found = {a.replace(",", "").lower() for a in _ANCHOR.findall(f" {point.strip()[1:]}")}
    return {a for a in found if a not in asked}


def _makes(text: str, anchors: set[str]) -> bool:
    flat = text.replace(",", "").lower()
    return all(anchor in flat for anchor in anchors)


def checked_coverage(analysis: dict, labelled: list[tuple[str, int, str]], question: str) -> dict:
    """The judge's consensus and partial coverage checked against the answers'
    text, as small judges need: the 1.5B calls a point every answer's when two of
    three make it, names the wrong answers for a partly covered point, and lists
    labels as points. Each point with numbers or names to check it by goes where the
    answers that contain them put it: consensus (all), `partial_coverage` (two or
    more, named), `unique_insights` (one). A point with nothing to check it by, or
    one no answer contains word for word (a paraphrase), stays as judged; a bare
    label is dropped."""
    if len(labelled) < 2:
        return analysis
    labels = {label for label, _, _ in labelled}
    consensus: list[str] = []
    partial: list[dict] = []
    insights = list(analysis["unique_insights"])
    judged = [(point, None) for point in analysis["consensus"]]
    judged += [(item["point"], item["labels"]) for item in analysis["partial_coverage"]]
    for point, named in judged:
        if point.strip() in labels:
            continue
        anchors = _anchors(point, question)
        making = [label for label, _, text in labelled if _makes(text, anchors)]
        if not anchors or not making:
            making = named or [label for label, _, _ in labelled]
        if len(making) == len(labelled):
            consensus.append(point)
        elif len(making) == 1:
            insights.append({"label": making[0], "insight": point})
        else:
            partial.append({"point": point, "labels": making})
    return analysis | {
        "consensus": consensus,
        "partial_coverage": partial,
        "unique_insights": insights,
    }

"""The fusion server tool's run: one model answers (a run of one seat) and may call
`fusion`; the call convenes the panel the request gave (the run's
`server_tools.panel`, frozen when the request came in), its seats answer with their
tools, the judge analyses, and the analysis goes back to the model as the tool's
result. The model writes the answer.

The panel's calls are answers of the same run, after the model's own (seat answers
and a judge answer at the next places), so the trace shows them under the run and
their cost is the run's. The panel runs one level deeper (`depth` + 1): a seat that
calls a fusion endpoint meets the depth limit as any panel's seat does.
"""

import copy
import json

from chat.models import Answer, Run
from panels.models import Panel

from . import events, judge
from .answer import RunContext
from .db import in_db
from .rows import new_answer
from .seats import SeatJob, answered, run_seats
from .tools.base import ToolResult

# In the chatroom, one consultation a question: each costs a whole panel (its seats
# and its judge), and a second would ask the same panel the same thing again.
ROOM_CONSULTS = 1


def consult_config(panel: Panel) -> dict:
    """The `server_tools` of a chatroom run whose model may consult `panel` ("May
    consult the panel"): the fusion tool alone, the model free to call it or not,
    the panel frozen now as every run's configuration is."""
    return {
        "names": ["fusion"],
        "max_tool_calls": ROOM_CONSULTS,
        "tool_choice": None,
        "panel": panel.snapshot(),
    }


def _panel_name(config: dict) -> str:
    named = (config.get("server_tools") or {}).get("panel", {}).get("panel")
    return f"the panel “{named['name']}”" if named else "the panel"


async def answered_alone(ctx: RunContext) -> None:
    """The decision card of a model that could consult the panel and did not."""
    if not any(d["stage"] == "consult" for d in ctx.run.decisions):
        panel = _panel_name(ctx.run.config)
        await ctx.decide("consult", f"Answered alone, without consulting {panel}", models=[])


def _quoted(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1].rstrip() + '…'}”"


def _panel_context(ctx: RunContext, panel: dict) -> RunContext:
    """A context for the panel's calls: the run's (its clients, its running calls, its
    budget, its places), with the panel's configuration, one level deeper."""
    run = copy.copy(ctx.run)
    outer = ctx.run.config
    run.config = {
        **panel,
        "depth": outer.get("depth", 0) + 1,
        "api_key": outer.get("api_key"),
        **({"conversation": outer["conversation"]} if "conversation" in outer else {}),
    }
    inner = copy.copy(ctx)
    inner.run = run
    inner.take_position = ctx.take_position  # type: ignore[method-assign]
    return inner


def _open_seats(ctx: RunContext, positions: list[int]) -> list[Answer]:
    seats = ctx.run.config["seats"]
    return [
        new_answer(ctx.run, Answer.Role.SEAT, position, seat["model"], None)
        for position, seat in zip(positions, seats, strict=True)
    ]


def _save_analysis(run: Run, verdict: judge.Verdict, labelled) -> None:
    labels = {label: answer_id for label, answer_id, _ in labelled}
    run.analysis = None if verdict.analysis is None else {**verdict.analysis, "labels": labels}
    run.analysis_raw, run.analysis_structured = verdict.raw, verdict.analysis is not None
    run.save(update_fields=["analysis", "analysis_raw", "analysis_structured"])


async def convene(ctx: RunContext, arguments: dict, said: str = "") -> ToolResult:
    """The panel asked, judged; the analysis (answers named by model) as the result.
    The decision card gives the model's reasons in its own words: the question it
    put to the panel, and what it wrote beside the call (`said`), if anything."""
    panel = _panel_context(ctx, ctx.run.config["server_tools"]["panel"])
    asked = arguments.get("question")
    question = asked.strip() if isinstance(asked, str) and asked.strip() else None
    models = [seat["model"]["model_id"] for seat in panel.run.config["seats"]]
    summary = f"Consulted {_panel_name(ctx.run.config)}, asking "
    summary += _quoted(question) if question else "the question as asked"
    if said.strip():
        summary += f"; the model’s reason: {_quoted(said)}"
    await ctx.decide("consult", summary, models=models, question=question, said=said.strip())
    positions = [ctx.take_position() for _ in models]
    seats = await in_db(_open_seats, panel, positions)
    for answer in seats:
        await ctx.announce(events.answer_created(answer))
    jobs = [
        SeatJob(answer, seat, question=question)
        for answer, seat in zip(seats, panel.run.config["seats"], strict=True)
    ]
    await run_seats(panel, jobs)
    usable = answered(seats)
    failed = [_failed(a) for a in seats if a not in usable]
    if not usable:
        failure = {"analysis": None, "failed_models": failed, "failure_reason": "all_panels_failed"}
        return _result(failure, "the panel failed", error="every panel model failed")
    labelled = judge.label_answers(panel.run, usable)
    verdict = await judge.ask_judge(panel, question or ctx.run.message.content, labelled)
    await in_db(_save_analysis, ctx.run, verdict, labelled)
    await ctx.announce(events.analysis_ready(ctx.run))
    report: dict[str, object] = {
        "analysis": _named(verdict.analysis, labelled, usable),
        "failed_models": failed,
        "failure_reason": verdict.failure or None,
    }
    if verdict.analysis is None:  # the model still gets what the panel said
        report["responses"] = [{"model": a.model_key, "content": a.text} for a in usable]
    return _result(report, f"{len(usable)} of {len(seats)} panel answers analysed")


def _failed(answer: Answer) -> dict:
    return {"model": answer.model_key, "error": answer.error or answer.status}


def _named(analysis: dict | None, labelled, answers: list[Answer]) -> dict | None:
    """The judge's analysis as OpenRouter's tool returns it: answers named by their
    model ids, the judge's own errors and scores left out."""
    if analysis is None:
        return None
    model_of = {a.pk: a.model_key for a in answers}
    by_label = {label: model_of.get(answer_id, label) for label, answer_id, _ in labelled}

    def model(label: str) -> str:
        return by_label.get(label, label)

    return {
        "consensus": analysis["consensus"],
        "contradictions": [
            {
                "topic": item["point"],
                "stances": [{"model": model(k), "stance": v} for k, v in item["positions"].items()],
                "verdict": item["verdict"],
            }
            for item in analysis["contradictions"]
        ],
        "partial_coverage": [
            {"point": item["point"], "models": [model(label) for label in item["labels"]]}
            for item in analysis.get("partial_coverage", [])
        ],
        "unique_insights": [
            {"model": model(item["label"]), "insight": item["insight"]}
            for item in analysis["unique_insights"]
        ],
        "blind_spots": analysis["blind_spots"],
    }


def _result(report: dict, preview: str, error: str = "") -> ToolResult:
    return ToolResult(json.dumps(report, ensure_ascii=False), preview, error=error)

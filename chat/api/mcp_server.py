"""Fusion as a tool for other agents, over MCP (the official `mcp` SDK).

    FUSIONROOM_API_KEY=fr-… python manage.py mcp      # stdio

Tools: `fusion` (ask a panel; the answer is the synthesis, with what it cost) and
`list_panels`. Runs go through the Celery worker like every other run, and appear
in the key owner's history.
"""

import asyncio
import os
from typing import TypedDict

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from chat.engine.admission import LimitReached
from chat.engine.db import in_db
from chat.engine.runs import start_conversation
from chat.models import Answer, Run
from core import storable

from . import auth, fusion_plugin
from .errors import BadRequest
from .follow import final_text

server = MCPServer(
    name="fusion-conversation",
    instructions="Ask a panel of LLMs; a judge compares their answers and a synthesizer "
    "writes one answer better than any single one. Slow (seconds to minutes), careful.",
)
WAIT_S = 600
DEFAULT_PANEL = "local"  # what `fusion` asks when the arguments name no panel or models
ARGUMENTS = "arguments"  # where the plugin's checks say a bad field sat


def _user_of(ctx: Context | None):
    return _caller_of(ctx)[0]


def _caller_of(ctx: Context | None) -> tuple:
    """(user, API key id). Over HTTP the request's API key was checked, and counted
    against its owner's rate, by `mcp_http`; over stdio the key comes from
    FUSIONROOM_API_KEY and each tool call is counted here, against the same
    requests-a-minute limit (the owner's, shared by all their keys)."""
    request = None
    if ctx is not None:
        try:
            request = ctx.request_context.request
        except ValueError:
            request = None
    state = getattr(request, "state", None)
    user_id = getattr(state, "fusion_user_id", None)
    if user_id is not None:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(pk=user_id), getattr(state, "fusion_key_id", None)
    record = _key()
    try:
        auth.check_rate(record)
    except auth.Refused as refused:
        raise ToolError(refused.message) from None
    return record.user, record.pk


def _key():
    try:
        return auth.key_from_value(os.environ.get("FUSIONROOM_API_KEY", ""))
    except auth.Refused:
        # ToolError: its words reach the calling agent (other errors are hidden).
        raise ToolError(
            "Set FUSIONROOM_API_KEY to a Fusion Room API key (API keys page) to use this server."
        ) from None


def _panels(user) -> list[dict]:
    from panels.models import Panel

    return [
        {"panel": p.slug, "name": p.name, "seats": p.seats.count(), "description": p.description}
        for p in Panel.objects.visible_to(user).order_by("slug")
    ]


def _answerer(user, slug: str | None, analysis_models: list[str] | None, judge: str):
    """The saved panel `slug` (default: local), or, when the arguments name models,
    an ad-hoc panel built as the fusion plugin's is (fusion_plugin.panel_for_mcp),
    never saved: `slug`, or else the default panel, lends what they leave out."""
    if analysis_models is None and not judge:
        return _saved(user, slug or DEFAULT_PANEL)
    if slug is not None:
        _saved(user, slug)  # a panel that is not there is refused by its name
    fields: dict = {"model": judge}
    if analysis_models is not None:
        fields["analysis_models"] = analysis_models
    try:
        plugin = fusion_plugin.plugin_fields(fields, ARGUMENTS)
        return fusion_plugin.panel_for_mcp(plugin, slug, user)
    except BadRequest as bad:
        # The plugin's words, naming the argument (`analysis_models[1]`, `model`).
        argument = (bad.param or "").removeprefix(f"{ARGUMENTS}.")
        raise ToolError(f"{bad.message} (argument `{argument}`)") from None


def _saved(user, slug: str):
    from panels.models import Panel

    panel = Panel.objects.reachable_by(user).filter(slug=slug).first()
    if panel is None:
        raise ToolError(f"No panel {slug!r}; list_panels shows the ones you can use.")
    return panel


def _start(
    caller: tuple, question: str, slug: str | None, analysis_models: list[str] | None, judge: str
) -> tuple[int, str]:
    user, key_id = caller
    extra = {"api_key": key_id}
    answerer = _answerer(user, slug, analysis_models, judge)
    try:
        message = start_conversation(user, answerer, question, via="mcp", extra=extra)
    except LimitReached as refused:
        raise ToolError(refused.message) from None
    return message.run.pk, message.conversation.events_key


class FusionToolResult(TypedDict):
    """What the `fusion` tool learns of a finished run, before it is put in words."""

    status: str
    answer: str  # the final answer; empty unless the run is done
    error: str
    cost: str
    models: list[str]  # the seats that answered
    run: int
    strategy: str
    decisions: list[str]  # each decision's summary, in order


def result_of(run: Run) -> FusionToolResult:
    final = run.final_answer
    return {
        "status": run.status,
        "answer": final.text if final and run.status == Run.Status.DONE else "",
        "error": run.failure_detail,
        "cost": run.cost_display,
        "models": [a.model_name for a in run.seat_answers if a.status == Answer.Status.DONE],
        "run": run.pk,
        "strategy": run.strategy,
        "decisions": [d["summary"] for d in run.decisions],
    }


def _result(run_id: int) -> FusionToolResult:
    return result_of(Run.objects.prefetch_related("answers").get(pk=run_id))


@server.tool()
async def list_panels(ctx: Context) -> list[dict]:
    """The panels you can ask: presets, yours and public ones."""
    user = await in_db(_user_of, ctx)
    return await in_db(_panels, user)


@server.tool()
async def fusion(
    question: str,
    ctx: Context,
    panel: str | None = None,
    analysis_models: list[str] | None = None,
    model: str = "",
) -> str:
    """Ask a panel of LLMs `question`; returns the synthesized answer.

    Args:
        question: what to ask, with all the context the panel needs.
        panel: a panel slug from list_panels (default: local).
        analysis_models: 1 to 8 model ids you may use (GET /v1/models lists them;
            one may repeat) to answer as an ad-hoc panel for this question alone,
            never saved. The panel given (or else the default panel) lends its
            tools, its deadline and, unless `model` names one, its judge.
        model: the analyst: the model id that judges the answers and writes the
            final one. With or without analysis_models; absent, the panel's judge.
    """
    if not question.strip():
        raise ToolError("The question is empty.")
    texts = [("question", question), ("panel", panel or ""), ("model", model)]
    texts += [(f"analysis_models[{i}]", m) for i, m in enumerate(analysis_models or [])]
    for name, value in texts:
        if found := storable.problem(value):
            raise ToolError(f"The {name} {found}.")
    caller = await in_db(_caller_of, ctx)
    run_id, conversation = await in_db(
        _start, caller, question.strip(), panel, analysis_models, model.strip()
    )
    try:
        async with asyncio.timeout(WAIT_S):
            # Followed like an API call: the run's events, the database as the last word.
            async for _ in final_text(run_id, conversation, asyncio.Event()):
                pass
    except TimeoutError:
        raise ToolError(f"No answer within {WAIT_S} s; run {run_id} goes on.") from None
    result = await in_db(_result, run_id)
    if result["status"] != Run.Status.DONE:
        raise ToolError(f"The run ended {result['status']}: {result['error']}")
    return (
        f"{result['answer']}\n\n— fused from {', '.join(result['models'])}; "
        f"cost {result['cost']}; run {result['run']}"
    )

"""Fusion as a tool for other agents, over MCP (the official `mcp` SDK).

    FUSIONROOM_API_KEY=fr-… python manage.py mcp      # stdio

Tools: `fusion` (ask a panel; the answer is the synthesis, with what it cost) and
`list_panels`. Runs go through the Celery worker like every other run, and appear
in the key owner's history.
"""

import asyncio
import os

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from chat.engine import events
from chat.engine.db import in_db
from chat.engine.runs import start_conversation
from chat.models import Run
from fusionroom import storable
from limits.admission import LimitReached

from . import auth
from .follow import final_text

server = MCPServer(
    name="fusion-room",
    instructions="Ask a panel of LLMs; a judge compares their answers and a synthesizer "
    "writes one answer better than any single one. Slow (seconds to minutes), careful.",
)
WAIT_S = 600


def _user_of(ctx: Context | None):
    return _caller_of(ctx)[0]


def _caller_of(ctx: Context | None) -> tuple:
    """(user, API key id). Over HTTP the request's API key was checked by `mcp_http`;
    over stdio the key comes from FUSIONROOM_API_KEY."""
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


def _start(caller: tuple, question: str, slug: str) -> tuple[int, str]:
    user, key_id = caller
    extra = {"api_key": key_id}
    from panels.models import Panel

    panel = Panel.objects.reachable_by(user).filter(slug=slug).first()
    if panel is None:
        raise ToolError(f"No panel {slug!r}; list_panels shows the ones you can use.")
    try:
        message = start_conversation(user, panel, question, via="mcp", extra=extra)
    except LimitReached as refused:
        raise ToolError(refused.message) from None
    return message.run.pk, message.conversation.events_key


def _result(run_id: int) -> dict:
    return events.mcp_result(Run.objects.prefetch_related("answers").get(pk=run_id))


@server.tool()
async def list_panels(ctx: Context) -> list[dict]:
    """The panels you can ask: presets, yours and public ones."""
    user = await in_db(_user_of, ctx)
    return await in_db(_panels, user)


@server.tool()
async def fusion(question: str, ctx: Context, panel: str = "local") -> str:
    """Ask a panel of LLMs `question`; returns the synthesized answer.

    Args:
        question: what to ask, with all the context the panel needs.
        panel: a panel slug from list_panels (default: local).
    """
    if not question.strip():
        raise ToolError("The question is empty.")
    for name, value in (("question", question), ("panel", panel)):
        if found := storable.problem(value):
            raise ToolError(f"The {name} {found}.")
    caller = await in_db(_caller_of, ctx)
    run_id, room = await in_db(_start, caller, question.strip(), panel)
    try:
        async with asyncio.timeout(WAIT_S):
            # Followed like an API call: the run's events, the database as the last word.
            async for _ in final_text(run_id, room, asyncio.Event()):
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

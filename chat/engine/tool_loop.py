"""The tool loop of one answer: the model is called; while it asks for tools and has
calls left, they are carried out at once, their results are sent back and it is
called again. Every round adds to the answer's totals (text, usage, cost, attempts),
so the answer reads as one call. What a round's call is (streamed, registered for a
stop, capped) is the answer's business: chat/engine/answer.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chat.models import Answer
from panels.calls import CallResult
from panels.pricing import Cost
from panels.providers import ChatMessage, ChatRequest, ToolCall, Usage

from . import events
from .db import in_db
from .tools import registry
from .tools.base import ToolEnv

if TYPE_CHECKING:
    from .answer import LiveAnswer, RunContext


@dataclass
class ToolUse:
    """The tools one answer may call, and how many calls it has; `choice`, a
    tool_choice for the first round ("required", or one tool named), as an API
    caller's server tools may ask."""

    names: list[str]
    max_calls: int
    env: ToolEnv
    choice: str | dict | None = None

    def schemas(self) -> tuple[dict, ...]:
        return tuple(registry.TOOLS[name].schema() for name in self.names)


OUT_OF_CALLS = (
    "You have used every tool call you were allowed. Answer the question now with what "
    "you have found."
)
# A small model often calls the same tool again with the same arguments after reading
# its result (the bundled Qwen 1.5B does, every time): the result would be the same, so
# it is not run again, and the model is asked to answer with what it has.
REPEATED_CALLS = (
    "You already made these tool calls with the same arguments; their results are above. "
    "Answer the question now with what you have found."
)


def _same_call(call: ToolCall) -> tuple[str, str]:
    """A call's name and arguments, the arguments' key order and spacing aside."""
    try:
        return call.name, json.dumps(json.loads(call.arguments), sort_keys=True)
    except ValueError:
        return call.name, call.arguments


def merge(total: CallResult, one: CallResult) -> None:
    """One more call (a tool round) added to the answer's totals."""
    first = not total.attempts
    if total.parts and one.parts:
        total.parts.append("\n\n")
    total.parts += one.parts
    total.attempts += one.attempts
    if first:
        total.usage, total.cost = one.usage, one.cost
    else:
        if one.usage is not None:
            before = total.usage or Usage(0, 0)
            total.usage = Usage(
                before.input_tokens + one.usage.input_tokens,
                before.output_tokens + one.usage.output_tokens,
                estimated=before.estimated or one.usage.estimated,
            )
        known = total.cost.usd is not None and one.cost.usd is not None
        usd = total.cost.usd + one.cost.usd if known else None  # type: ignore[operator]
        total.cost = Cost(usd, total.cost.source)
    total.answered_by, total.error = one.answered_by, one.error
    total.finish_reason, total.tool_calls = one.finish_reason, one.tool_calls
    if total.first_token_ms is None:
        total.first_token_ms = one.first_token_ms
    total.latency_ms = total.elapsed_ms()  # since the answer's first call


async def use_tools(
    ctx: RunContext, answer: Answer, calls: list[ToolCall], tools: ToolUse
) -> list[ChatMessage]:
    """Carry out one turn's tool calls at once; the messages that report them."""
    started_ms = ctx.elapsed_ms()
    if not answer.tool_steps:
        # The database learns only an answer's outcome, but a tool (a whole panel, for
        # `fusion`) can take minutes: a page drawn meanwhile must not call it queued.
        await in_db(_mark_streaming, answer.pk)
    for call in calls:
        await ctx.announce(events.tool_started(answer, call.id, call.name, call.arguments))
    outcomes = await asyncio.gather(*(registry.call(c.name, c.arguments, tools.env) for c in calls))
    replies = []
    for call, (result, latency_ms) in zip(calls, outcomes, strict=True):
        step = events.tool_step(call.id, call.name, call.arguments, result, latency_ms)
        step["started_ms"] = started_ms  # on the run's clock: places it on the trace
        answer.tool_steps = [*answer.tool_steps, step]
        await ctx.announce(events.tool_done(answer, step))
        replies.append(ChatMessage("tool", result.text, tool_call_id=call.id))
    return replies


def _mark_streaming(answer_id: int) -> None:
    Answer.objects.filter(pk=answer_id, status=Answer.Status.QUEUED).update(
        status=Answer.Status.STREAMING
    )


def _round(request: ChatRequest, tools: ToolUse | None, has_calls_left: bool, first: bool):
    """The tools a round's request carries, and its tool_choice. The request's own go
    as they are: an API caller's tools (chat/engine/client_tools.py), which the caller
    runs; beside them, the server's while the model has calls left. A choice that
    forces a tool holds for the first round only: then the model may answer."""
    if tools is None:
        return request.tools, request.tool_choice
    offered = (tools.schemas() if has_calls_left else ()) + tuple(request.tools)
    choice = (tools.choice or request.tool_choice) if first else None
    if not has_calls_left and isinstance(choice, dict):
        choice = None  # the tool it named is no longer offered
    return offered, (choice if offered else None)


def _callers(calls: list[ToolCall], request: ChatRequest, tools: ToolUse) -> list[ToolCall]:
    """The calls of a round that are the API caller's to run: its tools' names, not the
    server's (a name neither offered is the server's to answer: "no such tool")."""
    theirs = {tool["function"]["name"] for tool in request.tools} - set(tools.names)
    return [call for call in calls if call.name in theirs]


def messages_sent(messages: list[ChatMessage], request: ChatRequest) -> bool:
    """Whether a round went before this one (its messages were added)."""
    return len(messages) > len(request.messages)


async def call_with_tools(live: LiveAnswer, request: ChatRequest, tools: ToolUse | None) -> None:
    """Call the model for `live`'s answer, carrying out its tool calls between rounds
    until it answers, has used its calls or repeats calls it made; every round is
    merged into `live.total`."""
    messages = list(request.messages)
    used = 0
    made: set[tuple[str, str]] = set()
    repeated = False
    while True:
        offered = tools is not None and used < tools.max_calls and not repeated
        offer, choice = _round(request, tools, offered, first=not messages_sent(messages, request))
        round_request = replace(request, messages=tuple(messages), tools=offer, tool_choice=choice)
        result = CallResult()
        try:
            await live.call_once(round_request, result)
        finally:
            merge(live.total, result)
        if tools is None or not offered or not result.ok or not result.tool_calls:
            return
        if callers := _callers(result.tool_calls, request, tools):
            live.total.tool_calls = callers  # they go back to the caller; the answer ends
            return
        live.between_rounds()
        batch = result.tool_calls[: tools.max_calls - used]
        if (calls := {_same_call(call) for call in batch}) <= made:
            repeated = True
            messages.append(ChatMessage("user", REPEATED_CALLS))
            continue
        made |= calls
        used += len(batch)
        messages.append(ChatMessage("assistant", result.text, tool_calls=tuple(batch)))
        tools.env.said = result.text
        messages += await use_tools(live.ctx, live.answer, batch, tools)
        if used >= tools.max_calls:
            messages.append(ChatMessage("user", OUT_OF_CALLS))

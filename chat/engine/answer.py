"""Running one answer (a seat, the judge or the synthesizer) live.

Text flows model → coalescer → Redis (live text, sequence number and the delta in
the room's stream: one round trip) → every tab in the room; when the call ends, its
outcome is saved on the Answer and announced. A cancelled answer (a stop, or a
seat cut at the deadline) keeps its partial text, usage and cost.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from decimal import Decimal

from django.db import transaction

from chat.models import Answer, Run
from limits import spend
from panels import calls
from panels.calls import AnswerCap, CallLimits, CallResult, Target
from panels.cooldown import Cooldowns
from panels.pricing import Cost
from panels.providers import ChatMessage, ChatRequest, ErrorKind, ProviderError, ToolCall, Usage
from panels.providers.tokens import estimate_tokens

from . import client_tools, events, live, prompts
from .budget import RunBudget, Streaming
from .db import in_db
from .loop import is_shared_loop, make_http_client, shared_clients
from .tools import registry
from .tools.base import ToolEnv

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05


class RunContext:
    """What the coroutines of one run share: its event loop's clients, and which
    of its answers are running (so a stop can cancel them all at once)."""

    def __init__(self, run: Run):
        self.run = run
        self.room = run.message.conversation.events_key
        self.owner = run.message.conversation.owner
        # In a worker, clients are the shared loop's; elsewhere (tests, commands)
        # this run owns its own and closes them.
        self.owns_clients = not is_shared_loop(asyncio.get_running_loop())
        if self.owns_clients:
            self.http, self.redis = make_http_client(), live.redis_client()
        else:
            self.http, self.redis = shared_clients()
        self.cooldowns = Cooldowns(self.redis)
        self.started = asyncio.get_running_loop().time()
        self.running: dict[int, asyncio.Task] = {}
        self.late: set[int] = set()
        self.cancelled = False
        self.budget = RunBudget.of(run.config)
        self.over_budget = ""  # the words the run ends with when its budget stopped it
        self._dearest: tuple[Decimal, Decimal] | None = None
        # Answers after the seats (router, judge, synthesis…) take the next places.
        self._next_position = len(run.config.get("seats", []))

    def take_position(self) -> int:
        self._next_position += 1
        return self._next_position - 1

    def elapsed_ms(self) -> int:
        return int((asyncio.get_running_loop().time() - self.started) * 1000)

    async def decide(self, stage: str, summary: str, **detail) -> None:
        """Record an automatic decision, in words, and show it in the room at once."""
        decision = events.decision(stage, summary, self.elapsed_ms(), detail)
        self.run.decisions = [*self.run.decisions, decision]
        await in_db(lambda: self.run.save(update_fields=["decisions"]))
        await self.announce(events.decision_made(self.run, decision))

    async def announce(self, event) -> None:
        """Send an event built by `events` to every tab showing the room."""
        try:
            await live.announce(self.redis, self.room, event)
        except Exception as exc:  # a lost frame is recovered from the snapshot
            log.warning("could not announce %s for run %s: %r", event["type"], self.run.pk, exc)

    def cancel_all(self) -> None:
        self.cancelled = True
        for task in self.running.values():
            task.cancel()

    def check_budget(self) -> None:
        """Stop every call, keeping what they said, once the spend crosses the budget."""
        if not self.over_budget and (detail := self.budget.crossed()):
            self.over_budget = detail
            self.cancel_all()

    async def prices_of(self, target: Target) -> tuple[Decimal, Decimal]:
        """A token's price on a budget: an unknown price is the catalog's dearest."""
        if target.prices is not None:
            return target.prices
        if self._dearest is None:
            self._dearest = await in_db(spend.dearest_prices)
        return self._dearest

    async def aclose(self) -> None:
        if self.owns_clients:
            await self.http.aclose()
            await self.redis.aclose()


def friendly_error(
    error: ProviderError, answer: Answer, local: bool, site_wide: bool = True
) -> str:
    if error.kind == ErrorKind.CONTEXT_LENGTH:
        return (
            f"The conversation is too long for {answer.model_name}'s context window. "
            "Start a new conversation or send a shorter message."
        )
    if error.kind == ErrorKind.AUTH and site_wide:
        provider = answer.provider_name or "this provider"
        return (
            f"{error.message}. This is the site's key for {provider}: tell the administrator. "
            "(Your own keys live on the API keys page.)"
        )
    if error.kind == ErrorKind.AUTH:
        return f"{error.message}. Check the key of this provider on the API keys page."
    if error.kind == ErrorKind.CONNECTION and local:
        return (
            f"{answer.model_name} is not reachable ({error.message}). Is its model server "
            "running? `make run` starts it; /healthz shows which part is down."
        )
    return error.message


def record(answer: Answer, result: CallResult, local: bool, site_wide: bool = True) -> None:
    """Copy a call's outcome onto the answer: partial text is kept on failure too."""
    answer.text = result.text
    answer.attempts = [a.as_dict() for a in result.attempts]
    answer.first_token_ms = result.first_token_ms
    answer.latency_ms = result.latency_ms
    answer.finish_reason = result.finish_reason
    if result.usage is not None:
        answer.input_tokens = result.usage.input_tokens
        answer.output_tokens = result.usage.output_tokens
        answer.tokens_estimated = result.usage.estimated
    answer.cost_usd, answer.cost_source = result.cost.usd, result.cost.source
    if result.answered_by is not None:
        answer.model_key = result.answered_by.model_id
        answer.model_name = result.answered_by.display_name
        answer.provider_name = result.answered_by.endpoint.name
    if result.error is None and result.answered_by is not None:
        answer.status, answer.error, answer.error_kind = Answer.Status.DONE, "", ""
        return
    if result.error is None:  # nothing answered and nothing said why
        result.error = ProviderError(
            "No model answered.", retryable=False, kind=ErrorKind.UNAVAILABLE
        )
    answer.error_kind = str(result.error.kind)
    if result.error.kind == ErrorKind.CANCELLED:
        late = answer.status == Answer.Status.LATE
        answer.status = Answer.Status.LATE if late else Answer.Status.CANCELLED
        answer.error = (
            "Cut off at the panel's deadline: the quorum had already answered."
            if late
            else "Stopped before it finished."
        )
    else:
        answer.status = Answer.Status.FAILED
        answer.error = friendly_error(result.error, answer, local, site_wide)


@dataclass
class ToolUse:
    """The tools one answer may call, and how many calls it has."""

    names: list[str]
    max_calls: int
    env: ToolEnv

    def schemas(self) -> tuple[dict, ...]:
        return tuple(registry.TOOLS[name].schema() for name in self.names)


OUT_OF_CALLS = (
    "You have used every tool call you were allowed. Answer the question now with what "
    "you have found."
)


def _merge(total: CallResult, one: CallResult) -> None:
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


async def _use_tools(
    ctx: RunContext, answer: Answer, calls_: list[ToolCall], tools: ToolUse
) -> list[ChatMessage]:
    """Carry out one turn's tool calls at once; the messages that report them."""
    started_ms = ctx.elapsed_ms()
    for call in calls_:
        await ctx.announce(events.tool_started(answer, call.id, call.name, call.arguments))
    outcomes = await asyncio.gather(
        *(registry.call(c.name, c.arguments, tools.env) for c in calls_)
    )
    replies = []
    for call, (result, latency_ms) in zip(calls_, outcomes, strict=True):
        step = events.tool_step(call.id, call.name, call.arguments, result, latency_ms)
        step["started_ms"] = started_ms  # on the run's clock: places it on the trace
        answer.tool_steps = [*answer.tool_steps, step]
        await ctx.announce(events.tool_done(answer, step))
        replies.append(ChatMessage("tool", result.text, tool_call_id=call.id))
    return replies


async def run_answer(
    ctx: RunContext,
    answer: Answer,
    targets: list[Target],
    request: ChatRequest,
    limits: CallLimits | None = None,
    tools: ToolUse | None = None,
) -> CallResult:
    """Call the model(s) for one answer, streaming its text, and save the outcome.
    With tools, the model's tool calls are carried out and it is called again, until
    it answers or has used its calls. Runs as its own task so that a stop or the
    deadline can cancel it alone."""
    # "Streaming" lives in the events and in Redis; the database learns the outcome.
    # (One write fewer per answer, where every run starts all its seats at once.)
    answer.status = Answer.Status.STREAMING
    await ctx.announce(events.answer_started(answer))

    first = targets[0] if targets else None
    site_wide = not (first and first.endpoint.public_only)
    streaming = None
    if ctx.budget.watched and site_wide and first is not None:
        prompt = "".join(m.content for m in request.messages)
        streaming = Streaming(await ctx.prices_of(first), estimate_tokens(prompt))
        ctx.budget.streaming[answer.pk] = streaming
    flushed: list[str] = []  # every piece so far, to rebuild a live copy Redis lost
    seq = 0  # the last delta's number

    async def flush(text: str) -> None:
        nonlocal seq
        if streaming is not None:
            ctx.check_budget()
        # Redis holds only the live copy (the call keeps every part): a failure
        # here costs the live view for a moment, never the answer. The delta keeps
        # its number even when it failed (its reply may be what was lost, after the
        # delta went out): a browser that misses a number asks for a snapshot. A
        # live copy out of step (Redis restarted, or a flush failed) is then written
        # whole again by the next flush.
        flushed.append(text)
        seq += 1
        try:
            delta = events.answer_delta(answer, seq, text)
            if await live.append(ctx.redis, ctx.room, delta) != seq:
                await live.rewrite(ctx.redis, answer.pk, "".join(flushed), seq)
        except Exception as exc:
            log.warning("could not store live text of answer %s: %r", answer.pk, exc)

    async def on_text(text: str) -> None:
        if streaming is not None:
            streaming.deltas += 1
        coalescer.push(text)

    coalescer = live.Coalescer(flush, FLUSH_INTERVAL_S)
    coalescer.start()
    answer.started_ms = int((asyncio.get_running_loop().time() - ctx.started) * 1000)
    total = CallResult()
    messages = list(request.messages)
    used = 0
    try:
        while True:
            offered = tools is not None and used < tools.max_calls
            # Without tools of the panel's, the request's own go as they are: an API
            # caller's tools (chat/engine/client_tools.py), which the caller runs.
            round_request = replace(
                request,
                messages=tuple(messages),
                tools=request.tools if tools is None else tools.schemas() if offered else (),
            )
            result = CallResult()
            # The cap is the answer's: a round after a tool call has what is left
            # (less the blank line that joins the rounds' text).
            held = total.text + "\n\n" if total.parts else ""
            task = asyncio.create_task(
                calls.call(
                    targets,
                    round_request,
                    result,
                    client=ctx.http,
                    cooldowns=ctx.cooldowns,
                    on_text=on_text,
                    limits=limits,
                    cap=AnswerCap.from_settings().after(held),
                )
            )
            ctx.running[answer.pk] = task
            if ctx.cancelled:  # a stop that came before this call was registered
                task.cancel()
            try:
                await task
            finally:
                _merge(total, result)
            if tools is None or not offered or not result.ok or not result.tool_calls:
                break
            if total.parts:
                coalescer.push("\n\n")
            batch = result.tool_calls[: tools.max_calls - used]
            used += len(batch)
            messages.append(ChatMessage("assistant", result.text, tool_calls=tuple(batch)))
            messages += await _use_tools(ctx, answer, batch, tools)
            if used >= tools.max_calls:
                messages.append(ChatMessage("user", OUT_OF_CALLS))
    except asyncio.CancelledError:
        # The call was cancelled (a stop, or the deadline): record it and go on.
        # If this coroutine itself is being cancelled (the worker is shutting
        # down), still record, then let the cancellation through.
        if answer.pk in ctx.late:
            answer.status = Answer.Status.LATE
        if total.error is None:  # cancelled before the call began: it says nothing
            total.error = ProviderError("Cancelled.", retryable=False, kind=ErrorKind.CANCELLED)
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:  # a bug, not an upstream failure: say so, keep the text
        log.exception("answer %s failed unexpectedly", answer.pk)
        total.error = ProviderError(
            f"Internal error while calling {answer.model_name}: {type(exc).__name__}.",
            retryable=False,
            kind=ErrorKind.SERVER,
        )
    finally:
        ctx.running.pop(answer.pk, None)
        with contextlib.suppress(Exception):
            await coalescer.close()
        record(answer, total, local=bool(first and _is_local(first)), site_wide=site_wide)
        if tools is None and request.tools and answer.status == Answer.Status.DONE:
            answer.client_tool_calls = client_tools.as_stored(total.tool_calls)
        tool_cost = sum((Decimal(step["cost"]) for step in answer.tool_steps), Decimal(0))
        if tool_cost and answer.cost_usd is not None:
            answer.cost_usd += tool_cost  # search APIs that charge count in the run
        if answer.role == Answer.Role.SYNTHESIZER:
            answer.text = prompts.clean_final(answer.text)
        charged = await in_db(_save_outcome, ctx.run, answer, site_wide)
        if charged is not None:
            ctx.budget.streaming.pop(answer.pk, None)
            ctx.budget.spent += charged
            ctx.check_budget()
        await ctx.announce(events.answer_ended(answer, seq))
    return total


def _save_outcome(run: Run, answer: Answer, site_wide: bool) -> Decimal | None:
    """Save the answer and, for a call on the site's providers, count it into the
    ledger: one trip to the database and one commit (every run ends all its seats
    at once). Returns what was counted, or None when nothing was."""
    with transaction.atomic():
        answer.save()
        if not site_wide:
            return None
        try:
            with transaction.atomic():  # a lost ledger row must not lose the answer
                return spend.charge(run, answer)
        except Exception:
            log.exception("could not record the spend of answer %s", answer.pk)
            return None


def _is_local(target: Target) -> bool:
    return target.endpoint.base_url.startswith(("http://127.0.0.1", "http://localhost"))

"""Running one answer (a seat, the judge or the synthesizer) live.

Text flows model → coalescer → Redis (live text, sequence number and the delta in
the conversation's stream: one round trip) → every tab in the conversation; when the call ends, its
outcome is saved on the Answer and announced. A cancelled answer (a stop, or a
seat cut at the deadline) keeps its partial text, usage and cost.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

from django.db import transaction

from chat.models import Answer, Run
from limits import spend
from panels import calls
from panels.calls import AnswerCap, CallLimits, CallResult, Target
from panels.cooldown import Cooldowns
from panels.providers import ChatRequest, ErrorKind, ProviderError
from panels.providers.tokens import estimate_tokens

from . import client_tools, events, live, prompts, tap
from .budget import RunBudget, Streaming
from .db import in_db
from .loop import is_shared_loop, make_http_client, shared_clients
from .tool_loop import ToolUse, call_with_tools
from .tools.base import ToolResult

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05


class RunContext:
    """What the coroutines of one run share: its event loop's clients, and which
    of its answers are running (so a stop can cancel them all at once)."""

    def __init__(self, run: Run):
        self.run = run
        self.stream = run.message.conversation.events_key  # the conversation's events
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
        # A follower in this process reads the run's events from memory (tap.py).
        self.tap = tap.of(run.pk)
        # Seats' calls prepared when the run was taken (seats.prepared_at_start), by answer id.
        self.prepared: dict = {}
        # The fusion server tool's panel, when this run has one (chat/engine/fusion_tool.py).
        self.convene: Callable[[dict, str], Awaitable[ToolResult]] | None = None

    def take_position(self) -> int:
        self._next_position += 1
        return self._next_position - 1

    def elapsed_ms(self) -> int:
        return int((asyncio.get_running_loop().time() - self.started) * 1000)

    async def decide(self, stage: str, summary: str, **detail) -> None:
        """Record an automatic decision, in words, and show it in the conversation at once."""
        decision = events.decision(stage, summary, self.elapsed_ms(), detail)
        self.run.decisions = [*self.run.decisions, decision]
        await in_db(lambda: self.run.save(update_fields=["decisions"]))
        await self.announce(events.decision_made(self.run, decision))

    async def announce(self, event) -> None:
        """Send an event built by `events` to every tab showing the conversation."""
        await self.announce_all([event])

    async def announce_all(self, sent: list) -> None:
        """Several events, in order, in one round trip."""
        if self.tap is not None:
            for event in sent:
                self.tap.put_nowait(event)
        try:
            await live.announce_all(self.redis, self.stream, sent)
        except Exception as exc:  # a lost frame is recovered from the snapshot
            kinds = ", ".join(event["type"] for event in sent)
            log.warning("could not announce %s for run %s: %r", kinds, self.run.pk, exc)

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


class LiveAnswer:
    """One answer while its call runs: what it streamed (the live copy in Redis and
    each delta's number), its spend watched against the run's budget, and the totals
    of its rounds. `run_answer` takes it through its steps."""

    def __init__(
        self,
        ctx: RunContext,
        answer: Answer,
        targets: list[Target],
        request: ChatRequest,
        limits: CallLimits | None,
    ):
        self.ctx, self.answer, self.targets = ctx, answer, targets
        self.request, self.limits = request, limits
        self.first = targets[0] if targets else None
        # A call on the user's own provider is theirs: it is not counted in the run's
        # spend, and its errors do not send them to the administrator.
        self.site_wide = not (self.first and self.first.endpoint.public_only)
        self.streaming: Streaming | None = None
        self.flushed: list[str] = []  # every piece so far, to rebuild a live copy Redis lost
        self.seq = 0  # the last delta's number
        self.total = CallResult()
        self.tool_cost = Decimal(0)  # what its tool calls cost the site (paid search)
        self.coalescer = live.Coalescer(self.flush, FLUSH_INTERVAL_S)

    async def start(self) -> None:
        """Shown as streaming, its spend watched, its text flowing."""
        # "Streaming" lives in the events and in Redis; the database learns the outcome.
        # (One write fewer per answer, where every run starts all its seats at once.)
        self.answer.status = Answer.Status.STREAMING
        await self.ctx.announce(events.answer_started(self.answer))
        budget = self.ctx.budget
        if budget.watched and self.site_wide and self.first is not None:
            prompt = "".join(m.content for m in self.request.messages)
            prices = await self.ctx.prices_of(self.first)
            self.streaming = Streaming(prices, estimate_tokens(prompt))
            budget.streaming[self.answer.pk] = self.streaming
        self.coalescer.start()
        self.answer.started_ms = self.ctx.elapsed_ms()

    async def on_text(self, text: str) -> None:
        if self.streaming is not None:
            self.streaming.deltas += 1
        self.coalescer.push(text)

    async def flush(self, text: str) -> None:
        """A piece of text to every tab, as the next numbered delta."""
        if self.streaming is not None:
            self.ctx.check_budget()
        # Redis holds only the live copy (the call keeps every part): a failure
        # here costs the live view for a moment, never the answer. The delta keeps
        # its number even when it failed (its reply may be what was lost, after the
        # delta went out): a browser that misses a number asks for a snapshot. A
        # live copy out of step (Redis restarted, or a flush failed) is then written
        # whole again by the next flush.
        self.flushed.append(text)
        self.seq += 1
        ctx, answer = self.ctx, self.answer
        try:
            delta = events.answer_delta(answer, self.seq, text)
            if ctx.tap is not None:
                ctx.tap.put_nowait(delta)
            if await live.append(ctx.redis, ctx.stream, delta) != self.seq:
                await live.rewrite(ctx.redis, answer.pk, "".join(self.flushed), self.seq)
        except Exception as exc:
            log.warning("could not store live text of answer %s: %r", answer.pk, exc)

    async def call_once(self, request: ChatRequest, result: CallResult) -> None:
        """One call (a round of the tool loop), registered so that a stop or the
        deadline can cancel it."""
        # The cap is the answer's: a round after a tool call has what is left (less
        # the blank line that joins the rounds' text).
        held = self.total.text + "\n\n" if self.total.parts else ""
        task = asyncio.create_task(
            calls.call(
                self.targets,
                request,
                result,
                client=self.ctx.http,
                cooldowns=self.ctx.cooldowns,
                on_text=self.on_text,
                limits=self.limits,
                cap=AnswerCap.from_settings().after(held),
            )
        )
        self.ctx.running[self.answer.pk] = task
        if self.ctx.cancelled:  # a stop that came before this call was registered
            task.cancel()
        await task

    def between_rounds(self) -> None:
        """The rounds' text is joined by a blank line, live as in the totals."""
        if self.total.parts:
            self.coalescer.push("\n\n")

    def cancelled(self) -> None:
        """The call was cancelled (a stop, or cut off at the deadline)."""
        if self.answer.pk in self.ctx.late:
            self.answer.status = Answer.Status.LATE
        if self.total.error is None:  # cancelled before the call began: it says nothing
            self.total.error = ProviderError(
                "Cancelled.", retryable=False, kind=ErrorKind.CANCELLED
            )

    def broke(self, exc: Exception) -> None:
        """A bug, not an upstream failure: logged, said so, and the text kept."""
        log.exception("answer %s failed unexpectedly", self.answer.pk)
        self.total.error = ProviderError(
            f"Internal error while calling {self.answer.model_name}: {type(exc).__name__}.",
            retryable=False,
            kind=ErrorKind.SERVER,
        )

    async def finish(self, tools: ToolUse | None) -> None:
        """The call is over: its last text flushed, its outcome saved, announced."""
        self.ctx.running.pop(self.answer.pk, None)
        with contextlib.suppress(Exception):
            await self.coalescer.close()
        self.record_outcome(tools)
        await self.save()
        await self.ctx.announce(events.answer_ended(self.answer, self.seq))

    def record_outcome(self, tools: ToolUse | None) -> None:
        """The totals onto the answer: text, status, error, costs (its tools' too),
        an API caller's tool calls, a final answer cleaned of scaffolding."""
        answer = self.answer
        local = bool(self.first and _is_local(self.first))
        record(answer, self.total, local=local, site_wide=self.site_wide)
        # The caller's tools: its calls end the answer (the server's own were run).
        if self.request.tools and answer.status == Answer.Status.DONE:
            answer.client_tool_calls = client_tools.as_stored(self.total.tool_calls)
        tool_cost = sum((Decimal(step["cost"]) for step in answer.tool_steps), Decimal(0))
        self.tool_cost = tool_cost  # the site's search key paid it, whoever's model answered
        if tool_cost and answer.cost_usd is not None:
            answer.cost_usd += tool_cost  # search APIs that charge count in the run
        if answer.role == Answer.Role.SYNTHESIZER:
            answer.text = prompts.clean_final(answer.text)

    async def save(self) -> None:
        """Saved, and counted in the run's spend (the estimate while it streamed
        gives way to what it cost)."""
        ctx = self.ctx
        charged = await in_db(_save_outcome, ctx.run, self.answer, self.site_wide, self.tool_cost)
        if charged is not None:
            ctx.budget.streaming.pop(self.answer.pk, None)
            ctx.budget.spent += charged
            ctx.check_budget()


def _being_cancelled() -> bool:
    """Whether this task itself is being cancelled (the worker shutting down), not
    only the call it awaited."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


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
    it answers or has used its calls (tool_loop.py). Runs as its own task so that a
    stop or the deadline can cancel it alone."""
    live_answer = LiveAnswer(ctx, answer, targets, request, limits)
    await live_answer.start()
    try:
        await call_with_tools(live_answer, request, tools)
    except asyncio.CancelledError:
        # Recorded either way; a cancellation of this task itself goes on through.
        live_answer.cancelled()
        if _being_cancelled():
            raise
    except Exception as exc:
        live_answer.broke(exc)
    finally:
        await live_answer.finish(tools)
    return live_answer.total


def _save_outcome(
    run: Run, answer: Answer, site_wide: bool, tool_cost: Decimal = Decimal(0)
) -> Decimal | None:
    """Save the answer and count what it cost the site into the ledger: a call on
    the site's providers (its tools included), or, for a call on the user's own
    provider, only its paid tool calls (the site's search key paid for them). One
    trip to the database and one commit (every run ends all its seats at once).
    Returns what was counted, or None when nothing was."""
    with transaction.atomic():
        answer.save()
        if not site_wide and not tool_cost:
            return None
        try:
            with transaction.atomic():  # a lost ledger row must not lose the answer
                if site_wide:
                    return spend.charge(run, answer, tool_cost)
                return spend.charge_tools(run, answer, tool_cost)
        except Exception:
            log.exception("could not record the spend of answer %s", answer.pk)
            return None


def _is_local(target: Target) -> bool:
    return target.endpoint.base_url.startswith(("http://127.0.0.1", "http://localhost"))

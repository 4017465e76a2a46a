"""One model call made reliable: time limits, retries, fallbacks and cooldowns.

    result = CallResult()
    await call(targets, request, result, client=client, cooldowns=cooldowns, on_text=send)

`targets` is the seat's model followed by its fallbacks. `result` is filled as the
call goes, so a cancelled call still leaves its partial text, usage and cost.
Rules, in the order they apply:
- a model in cooldown is skipped, and the skip recorded;
- a retryable failure (408/409/429/5xx, connection, timeout, cut stream) is retried
  with exponential backoff and full jitter, or after `Retry-After` when given,
  within a cap on count and total wait, and only while no text was passed on;
- when a model gives up, the next target is tried (again only before any text);
- only failures that are the upstream's fault count toward its cooldown (cooldown.py);
- an answer that passes its cap (`AnswerCap`: characters and bytes) keeps what fits
  and ends at once with a `too_large` error, closing the upstream connection;
- the answer records which model really answered, and every attempt.
"""

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

import httpx
from django.conf import settings

from . import pricing
from .call_limits import CallLimits
from .cooldown import Cooldowns, counts_toward_cooldown
from .providers import (
    ChatRequest,
    Endpoint,
    ErrorKind,
    Event,
    Finish,
    ProviderError,
    StreamLimits,
    TextDelta,
    ToolCall,
    Usage,
    provider_for,
    text_tool_calls,
)
from .providers.tokens import estimate_tokens
from .repetition import LoopWatch


@dataclass(frozen=True)
class AnswerCap:
    """How much text one answer may hold, in characters and in UTF-8 bytes.

    An upstream decides how long it streams, and a user's own provider may be
    hostile: everything downstream (this process, Redis's live copy, the database
    row, the Markdown rendering, every browser in the conversation) holds at most this.
    """

    chars: int
    bytes: int

    @classmethod
    def from_settings(cls) -> "AnswerCap":
        return cls(chars=settings.ANSWER_MAX_CHARS, bytes=settings.ANSWER_MAX_BYTES)

    def after(self, text: str) -> "AnswerCap":
        """What is left of the cap once `text` is held (an answer of several calls)."""
        return AnswerCap(max(0, self.chars - len(text)), max(0, self.bytes - _size(text)))

    def fit(self, text: str) -> str:
        """The longest start of `text` within both limits, never half a character."""
        kept = text[: self.chars]
        while (size := _size(kept)) > self.bytes:
            kept = kept[: len(kept) - max(1, (size - self.bytes) // 4)]
        return kept


def _size(text: str) -> int:
    # surrogatepass: a model may send a lone surrogate (JSON allows "\ud800"); it is
    # refused later, when saved (core/storable.py), not here.
    return len(text.encode("utf-8", "surrogatepass"))


def stream_limits() -> StreamLimits:
    """What a provider may hold besides the text: one SSE event may carry a whole
    answer in one piece, JSON-escaped (up to about 4 bytes per byte); one tool call's
    arguments as much as an answer."""
    return StreamLimits(
        event_bytes=max(64 * 1024, 4 * settings.ANSWER_MAX_BYTES),
        tool_argument_chars=settings.ANSWER_MAX_CHARS,
    )


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_total_wait_s: float = 30.0

    @classmethod
    def from_settings(cls) -> "RetryPolicy":
        return cls(max_retries=settings.CALL_MAX_RETRIES)

    def backoff(self, retry: int) -> float:
        """Full jitter: spreads retries of many callers hit by the same outage."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**retry))


@dataclass(frozen=True)
class Target:
    """One model at one provider, ready to call."""

    provider_id: int
    model_id: str
    display_name: str
    endpoint: Endpoint
    prices: tuple[Decimal, Decimal] | None  # USD per token, None when unknown
    context_length: int = 8192
    # A provider without an owner: every user calls it, so its cooldown is everyone's.
    site_wide: bool = True
    # The model writes its tool calls in its text (the bundled Qwen models): they are
    # read from it when tools were offered (providers/text_tool_calls.py).
    tool_calls_in_text: bool = False
    # The server holds calls beyond its slots in a queue (the bundled llama.cpp models):
    # a long wait for the first token there is a busy machine, not a failing upstream.
    queues: bool = False


@dataclass
class Attempt:
    model: str  # display name
    model_id: str
    provider_id: int
    outcome: str = "running"  # answered | failed | skipped | cancelled
    error: dict | None = None
    started_ms: int = 0
    first_token_ms: int | None = None
    ended_ms: int | None = None
    waited_s: float = 0.0  # backoff slept before this attempt

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CallResult:
    parts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    cost: pricing.Cost = pricing.UNKNOWN
    answered_by: Target | None = None
    attempts: list[Attempt] = field(default_factory=list)
    error: ProviderError | None = None
    finish_reason: str = ""
    first_token_ms: int | None = None
    latency_ms: int | None = None
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def ok(self) -> bool:
        return self.error is None and self.answered_by is not None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)


async def _limited(stream: AsyncGenerator[Event, None], limits: CallLimits, name: str):
    """The provider's events, with first-token, idle-gap and total limits.

    A limit that runs out cancels the pending read, which unwinds the provider's
    `async with` and closes the upstream connection at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.total_s
    started = False
    try:
        while True:
            left = deadline - loop.time()
            limit = "idle_s" if started else "first_token_s"  # a CallLimits field
            wait = getattr(limits, limit)
            try:
                async with asyncio.timeout(min(wait, max(left, 0))):
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if left <= wait:
                    limit = "total_s"
                    message = f"{name} did not finish within {limits.total_s:.3g} s"
                elif limit == "first_token_s":
                    message = f"{name} sent no first token within {wait:g} s"
                else:
                    message = f"{name} stalled: nothing for {wait:g} s mid-answer"
                # The code names the limit that ran out: cooldown.py weighs whose it was.
                raise ProviderError(
                    message, retryable=True, kind=ErrorKind.TIMEOUT, code=limit
                ) from None
            if isinstance(event, TextDelta | ToolCall):
                started = True
            yield event
    finally:
        await stream.aclose()


def _settle_usage(result: CallResult, request: ChatRequest, target: Target | None) -> None:
    """Usage and cost for what was received, also when the call did not finish."""
    if result.usage is None and result.parts:
        prompt = "".join(m.content for m in request.messages)
        result.usage = Usage(estimate_tokens(prompt), len(result.parts), estimated=True)
    if result.usage is not None and target is not None:
        result.cost = pricing.cost_of(
            result.usage.input_tokens, result.usage.output_tokens, result.usage.cost, target.prices
        )


async def _attempt(
    target: Target,
    request: ChatRequest,
    result: CallResult,
    attempt: Attempt,
    client: httpx.AsyncClient,
    limits: CallLimits,
    on_text: Callable[[str], Awaitable[None]],
    cap: AnswerCap,
) -> None:
    provider = provider_for(target.endpoint, client)
    stream = provider.stream(request)
    loop_watch = LoopWatch()
    events = _limited(stream, limits, target.endpoint.name or target.display_name)
    if target.tool_calls_in_text and request.tools:
        # Outside the time limits: while a call is held back, its text still arrives.
        events = text_tool_calls.parsed(events, request.tools, request.limits)
    left = cap.after(result.text)
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if attempt.first_token_ms is None:
                    attempt.first_token_ms = result.elapsed_ms()
                    result.first_token_ms = attempt.first_token_ms
                text = left.fit(event.text)
                if text:
                    result.parts.append(text)
                    await on_text(text)
                    left = left.after(text)
                if text != event.text:
                    raise _too_large(target)
                if unit := loop_watch.feed(event.text):
                    raise ProviderError(
                        f"{target.display_name} fell into a loop, repeating "
                        f"“{unit.strip()[:60]}”, and was cut off after "
                        f"{len(result.text):,} characters",
                        retryable=False,
                        kind=ErrorKind.REPETITION,
                    )
            elif isinstance(event, ToolCall):
                result.tool_calls.append(event)
            elif isinstance(event, Usage):
                result.usage = event
            elif isinstance(event, Finish):
                result.finish_reason = event.reason
    finally:
        await events.aclose()  # closes the upstream stream now, not at garbage collection


def _too_large(target: Target) -> ProviderError:
    # Not retryable: a model that wrote this much would write it again. The message
    # names the whole answer's cap (a call after a tool round has only what is left).
    cap = AnswerCap.from_settings()
    return ProviderError(
        f"{target.display_name}'s answer passed the cap of {cap.chars:,} characters "
        f"({cap.bytes:,} bytes) and was cut off there; the text up to the cap is kept. "
        "Ask for a shorter answer, or raise ANSWER_MAX_CHARS / ANSWER_MAX_BYTES.",
        retryable=False,
        kind=ErrorKind.TOO_LARGE,
    )


async def call(
    targets: list[Target],
    request: ChatRequest,
    result: CallResult,
    *,
    client: httpx.AsyncClient,
    cooldowns: Cooldowns,
    on_text: Callable[[str], Awaitable[None]],
    limits: CallLimits | None = None,
    retry: RetryPolicy | None = None,
    cap: AnswerCap | None = None,
) -> CallResult:
    """`cap` is what this call's text may hold (by default, a whole answer's cap)."""
    limits = limits or CallLimits.from_settings()
    retry = retry or RetryPolicy.from_settings()
    cap = AnswerCap.from_settings() if cap is None else cap
    request = replace(request, connect_timeout_s=limits.connect_s, limits=stream_limits())
    target: Target | None = None
    try:
        for target in targets:
            model_request = _for_model(request, target.model_id)
            remaining = await cooldowns.remaining(target.provider_id, target.model_id)
            if remaining > 0:
                skipped = (
                    f"{target.display_name} is cooling down after repeated "
                    f"failures ({remaining:.0f} s left); skipped"
                )
                result.attempts.append(
                    Attempt(
                        target.display_name,
                        target.model_id,
                        target.provider_id,
                        outcome="skipped",
                        started_ms=result.elapsed_ms(),
                        ended_ms=result.elapsed_ms(),
                        error={
                            "kind": ErrorKind.COOLDOWN.value,
                            "retryable": True,
                            "status": None,
                            "message": skipped,
                        },
                    )
                )
                result.error = ProviderError(skipped, retryable=True, kind=ErrorKind.COOLDOWN)
                continue
            retries, waited = 0, 0.0
            while True:
                attempt = Attempt(
                    target.display_name,
                    target.model_id,
                    target.provider_id,
                    started_ms=result.elapsed_ms(),
                    waited_s=waited,
                )
                result.attempts.append(attempt)
                try:
                    await _attempt(
                        target, model_request, result, attempt, client, limits, on_text, cap
                    )
                except ProviderError as error:
                    attempt.outcome, attempt.error = "failed", error.as_dict()
                    attempt.ended_ms = result.elapsed_ms()
                    result.error = error
                    cooling = 0.0
                    if counts_toward_cooldown(
                        error,
                        limits,
                        site_wide=target.site_wide,
                        answering=bool(result.parts),
                        queues=target.queues,
                    ):
                        cooling = await cooldowns.failed(target.provider_id, target.model_id)
                    if result.parts:
                        return result  # text was passed on: no retry, no fallback
                    if error.retryable and not cooling and retries < retry.max_retries:
                        delay = error.retry_after
                        if delay is None:
                            delay = retry.backoff(retries)
                        if waited + delay <= retry.max_total_wait_s:
                            retries, waited = retries + 1, waited + delay
                            await asyncio.sleep(delay)
                            continue
                    break  # give up on this model; try the next target
                attempt.outcome, attempt.ended_ms = "answered", result.elapsed_ms()
                result.answered_by, result.error = target, None
                await cooldowns.succeeded(target.provider_id, target.model_id)
                return result
        if result.error is None:
            result.error = ProviderError(
                "No model was configured for this call.",
                retryable=False,
                kind=ErrorKind.UNAVAILABLE,
            )
        return result
    except asyncio.CancelledError:
        if result.attempts and result.attempts[-1].outcome == "running":
            result.attempts[-1].outcome = "cancelled"
            result.attempts[-1].ended_ms = result.elapsed_ms()
        result.error = ProviderError("Cancelled.", retryable=False, kind=ErrorKind.CANCELLED)
        raise
    finally:
        result.latency_ms = result.elapsed_ms()
        answered = result.answered_by or (target if result.parts else None)
        _settle_usage(result, request, answered)


def _for_model(request: ChatRequest, model_id: str) -> ChatRequest:
    return replace(request, model=model_id)

"""Running a run: stream each answer from its model, live, then save it.

Today a run has one answer from one model. The fusion pipeline grows from here:
more answers streamed side by side, a judge and a synthesizer, all through
`stream_answer`.
"""

import asyncio
import logging

import httpx
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from panels import calls
from panels.calls import CallResult, Target
from panels.cooldown import Cooldowns
from panels.crypto import UnreadableSecret
from panels.models import CatalogModel
from panels.providers import ChatRequest, ErrorKind, ProviderError

from . import markdown, streams
from .coalesce import Coalescer
from .db import in_db
from .history import conversation_messages
from .models import Answer, Run

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05
# Connections are pooled per run (one client per event loop); limits are enforced
# per call in panels/calls.py, so httpx itself only bounds the pool.
POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=20)


def friendly_error(error: ProviderError, answer: Answer, local: bool) -> str:
    if error.kind == ErrorKind.CONTEXT_LENGTH:
        return (
            f"The conversation is too long for {answer.model_name}'s context window. "
            "Start a new conversation or send a shorter message."
        )
    if error.kind == ErrorKind.CONNECTION and local:
        return (
            f"{answer.model_name} is not reachable ({error.message}). Is its model server "
            "running? `make run` starts it; /healthz shows which part is down."
        )
    return error.message


class RunContext:
    """What the coroutines of one run share: its event loop's clients."""

    def __init__(self, run: Run):
        self.run = run
        self.group = run.message.conversation.group_name
        self.layer = get_channel_layer()
        self.redis = streams.redis_client()
        self.cooldowns = Cooldowns(self.redis)
        # trust_env off: a proxy from the environment would bypass the SSRF pinning.
        self.http = httpx.AsyncClient(limits=POOL_LIMITS, follow_redirects=False, trust_env=False)

    async def announce(self, event: dict) -> None:
        try:
            await streams.announce(self.layer, self.group, event)
        except Exception:  # a lost frame is recovered from the snapshot
            log.warning("could not announce %s for run %s", event["type"], self.run.pk)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()


def _load(run_id: int) -> tuple[Run, list[Answer]] | None:
    run = Run.objects.select_related("message__conversation").get(pk=run_id)
    if run.status != Run.Status.QUEUED:
        return None  # already taken (a redelivered task); never run twice
    run.status = Run.Status.RUNNING
    run.started_at = timezone.now()
    run.save(update_fields=["status", "started_at"])
    answers = list(run.answers.select_related("catalog_model__provider"))
    return run, answers


def _finish_run(run: Run, answers: list[Answer]) -> None:
    failed = [a for a in answers if a.status != Answer.Status.DONE]
    run.status = Run.Status.FAILED if failed else Run.Status.DONE
    run.failure_reason = "; ".join(f"{a.model_name}: {a.error}" for a in failed)
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "failure_reason", "finished_at"])
    run.message.conversation.save(update_fields=["updated_at"])


def target_for(model: CatalogModel) -> Target:
    return Target(
        provider_id=model.provider_id,
        model_id=model.model_id,
        display_name=model.display_name,
        endpoint=model.provider.endpoint(),
        prices=model.price_per_token(),
        context_length=model.context_length,
    )


def _prepare(answer: Answer, run: Run) -> tuple[list[Target], ChatRequest]:
    model = answer.catalog_model
    if model is None or not model.is_active or not model.provider.is_active:
        raise ProviderError(
            f"The model {answer.model_name!r} is no longer available.",
            retryable=False,
            kind=ErrorKind.UNAVAILABLE,
        )
    try:
        targets = [target_for(model)]
    except UnreadableSecret as exc:
        raise ProviderError(str(exc), retryable=False, kind=ErrorKind.AUTH) from None
    request = ChatRequest(
        model=model.model_id,
        messages=conversation_messages(
            run.message, model.context_length, settings.DEFAULT_MAX_TOKENS
        ),
        max_tokens=settings.DEFAULT_MAX_TOKENS,
    )
    return targets, request


async def stream_answer(ctx: RunContext, answer: Answer) -> None:
    answer.status = Answer.Status.STREAMING
    await in_db(lambda: answer.save(update_fields=["status"]))

    async def flush(text: str) -> None:
        seq = await streams.append(ctx.redis, answer.pk, text)
        await ctx.announce({"type": "answer.delta", "answer": answer.pk, "seq": seq, "text": text})

    async def on_text(text: str) -> None:
        coalescer.push(text)

    coalescer = Coalescer(flush, FLUSH_INTERVAL_S)
    coalescer.start()
    result = CallResult()
    local = False
    try:
        targets, request = await in_db(_prepare, answer, ctx.run)
        local = answer.catalog_model.provider.source == "local"
        await calls.call(
            targets, request, result, client=ctx.http, cooldowns=ctx.cooldowns, on_text=on_text
        )
    except ProviderError as exc:
        result.error = exc
    finally:
        await coalescer.close()
        _record(answer, result, local)
        _, last_seq = await streams.live_state(ctx.redis, answer.pk)
        await in_db(answer.save)
    await ctx.announce(answer_event(answer, last_seq))


def _record(answer: Answer, result: CallResult, local: bool) -> None:
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
    if result.error is None:
        answer.status, answer.error, answer.error_kind = Answer.Status.DONE, "", ""
    else:
        cancelled = result.error.kind == ErrorKind.CANCELLED
        answer.status = Answer.Status.CANCELLED if cancelled else Answer.Status.FAILED
        answer.error = friendly_error(result.error, answer, local)
        answer.error_kind = str(result.error.kind)


def answer_event(answer: Answer, seq: int) -> dict:
    return {
        "type": "answer.done" if answer.status == Answer.Status.DONE else "answer.failed",
        "answer": answer.pk,
        "seq": seq,
        "status": answer.status,
        "html": markdown.render(answer.text),
        "error": answer.error,
        "stats": answer_stats(answer),
    }


def answer_stats(answer: Answer) -> dict:
    return {
        "cost": answer.cost_display,
        "model": answer.model_name,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "tokens_estimated": answer.tokens_estimated,
        "first_token_ms": answer.first_token_ms,
        "latency_ms": answer.latency_ms,
    }


async def execute(run_id: int) -> None:
    loaded = await in_db(_load, run_id)
    if loaded is None:
        log.info("run %s is not queued; skipping", run_id)
        return
    run, answers = loaded
    ctx = RunContext(run)
    try:
        await ctx.announce({"type": "run.started", "run": run.pk, "status": run.status})
        await asyncio.gather(*(stream_answer(ctx, answer) for answer in answers))
        await in_db(_finish_run, run, answers)
        await ctx.announce(
            {
                "type": "run.done",
                "run": run.pk,
                "status": run.status,
                "failure_reason": run.failure_reason,
            }
        )
    finally:
        await ctx.aclose()

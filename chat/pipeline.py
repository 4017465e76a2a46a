"""Running a run: stream each answer from its model, live, then save it.

Today a run has one answer from one model. The fusion pipeline grows from here:
more answers streamed side by side, a judge and a synthesizer, all through
`stream_answer`.
"""

import asyncio
import logging
import time

import httpx
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from panels import local_models
from panels.providers import ChatRequest, Finish, ProviderError, TextDelta, Usage, provider_for

from . import markdown, streams
from .coalesce import Coalescer
from .db import in_db
from .history import conversation_messages
from .models import Answer, Run

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05
# connect: a local server answers at once or not at all; read: the longest gap
# between two chunks (a busy local server queues requests, so allow minutes).
HTTP_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=30.0)
ANSWER_TIMEOUT_S = 900


def friendly_error(exc: ProviderError, model_name: str) -> str:
    if exc.code == "context_length_exceeded":
        return (
            f"The conversation is too long for {model_name}'s context window. "
            "Start a new conversation or send a shorter message."
        )
    if exc.status is None and "could not reach" in exc.message:
        return (
            f"{model_name} is not reachable ({exc.message}). Is its model server running? "
            "`make run` starts it; /healthz shows which part is down."
        )
    return exc.message


class RunContext:
    """What the coroutines of one run share: its event loop's clients."""

    def __init__(self, run: Run):
        self.run = run
        self.group = run.message.conversation.group_name
        self.layer = get_channel_layer()
        self.redis = streams.redis_client()
        self.http = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )

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
    return run, list(run.answers.all())


def _finish_run(run: Run, answers: list[Answer]) -> None:
    failed = [a for a in answers if a.status != Answer.Status.DONE]
    run.status = Run.Status.FAILED if failed else Run.Status.DONE
    run.failure_reason = "; ".join(f"{a.model_name}: {a.error}" for a in failed)
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "failure_reason", "finished_at"])
    run.message.conversation.save(update_fields=["updated_at"])


async def stream_answer(ctx: RunContext, answer: Answer) -> None:
    model = local_models.get(answer.model_key)
    started = time.monotonic()
    answer.status = Answer.Status.STREAMING
    await in_db(lambda: answer.save(update_fields=["status"]))

    async def flush(text: str) -> None:
        seq = await streams.append(ctx.redis, answer.pk, text)
        await ctx.announce({"type": "answer.delta", "answer": answer.pk, "seq": seq, "text": text})

    coalescer = Coalescer(flush, FLUSH_INTERVAL_S)
    coalescer.start()
    parts: list[str] = []
    try:
        if model is None:
            raise ProviderError(
                f"The model {answer.model_key!r} is not available.", retryable=False
            )
        request = ChatRequest(
            model=model.key,
            messages=await in_db(
                conversation_messages,
                ctx.run.message,
                model.context_length,
                settings.DEFAULT_MAX_TOKENS,
            ),
            max_tokens=settings.DEFAULT_MAX_TOKENS,
        )
        provider = provider_for(model.endpoint, ctx.http)
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            async for event in provider.stream(request):
                if isinstance(event, TextDelta):
                    if not parts:
                        answer.first_token_ms = int((time.monotonic() - started) * 1000)
                    parts.append(event.text)
                    coalescer.push(event.text)
                elif isinstance(event, Usage):
                    answer.input_tokens = event.input_tokens
                    answer.output_tokens = event.output_tokens
                    answer.tokens_estimated = event.estimated
                elif isinstance(event, Finish):
                    answer.finish_reason = event.reason
        answer.status = Answer.Status.DONE
    except ProviderError as exc:
        answer.status = Answer.Status.FAILED
        answer.error = friendly_error(exc, answer.model_name)
    except TimeoutError:
        answer.status = Answer.Status.FAILED
        answer.error = f"{answer.model_name} took longer than {ANSWER_TIMEOUT_S} s to answer."
    finally:
        await coalescer.close()
        answer.text = "".join(parts)  # partial text is kept on failure too
        answer.latency_ms = int((time.monotonic() - started) * 1000)
        _, last_seq = await streams.live_state(ctx.redis, answer.pk)
        await in_db(answer.save)

    await ctx.announce(answer_event(answer, last_seq))


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

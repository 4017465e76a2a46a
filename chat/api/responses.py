"""POST /v1/responses: OpenAI's Responses API, which newer SDKs and agent frameworks
call by default, over the same runs as /v1/chat/completions.

The same checks (views._check), the same start (views.start_or_follow, which
honours an Idempotency-Key) and the same following of the final answer
(follow.final_text); only the shapes differ. The answer is one `message` output
item with one `output_text` part. Streamed, it is the event sequence OpenAI sends
(response.created … response.completed), each with its `sequence_number`, so the
official client's typed events and its `responses.stream()` helper both read it. A
client that hangs up cancels its run.
"""

import asyncio
import json
import time

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chat.engine.db import in_db
from chat.models import Answer, Run

from . import run_result, views
from .errors import error
from .follow import final_text
from .responses_request import ResponseRequest, read


def response_id(run_id: int) -> str:
    return f"resp_fusion_{run_id}"


def message_id(run_id: int) -> str:
    return f"msg_fusion_{run_id}"


def _usage(run: Run) -> dict:
    usage = run_result.usage(run)
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
        "cost": usage["cost"],  # as OpenRouter adds it: the run's every call, in USD
        # With server tools, how often they ran, as on /v1/chat/completions.
        **({"server_tool_use": usage["server_tool_use"]} if "server_tool_use" in usage else {}),
    }


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": []}


def _message(run_id: int, text: str, status: str) -> dict:
    return {
        "type": "message",
        "id": message_id(run_id),
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)] if status != "in_progress" else [],
    }


def _status(run: Run, final: Answer | None) -> str:
    if run.is_active:
        return "in_progress"
    if run.status == Run.Status.CANCELLED:
        return "cancelled"
    if run.status != Run.Status.DONE or final is None:
        return "failed"
    return "incomplete" if final.finish_reason == "length" else "completed"


def response_object(run_id: int, asked: ResponseRequest) -> dict:
    """The `response` object of a run, whatever its state."""
    run = Run.objects.prefetch_related("answers").get(pk=run_id)
    final = run.final_answer
    status = _status(run, final)
    failed = status in ("failed", "cancelled")
    return {
        "id": response_id(run.pk),
        "object": "response",
        "created_at": int(run.created_at.timestamp()),
        "completed_at": int(run.finished_at.timestamp()) if run.finished_at else None,
        "status": status,
        "error": {
            "code": "server_error",
            "message": run.failure_detail or f"The run ended {run.status}.",
            "type": "upstream_error",
            "param": None,
        }
        if failed
        else None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": asked.instructions,
        "max_output_tokens": asked.max_tokens,
        "metadata": asked.metadata,
        "model": asked.model,
        "output": [_message(run.pk, final.text, status)]
        if final is not None and status in ("completed", "incomplete")
        else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,  # nothing to fetch back by id: the run is in the user's history
        "temperature": asked.temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": None if status == "in_progress" else _usage(run),
        "user": asked.user or None,
        "fusion": run_result.fusion(run),
    }


def _failure(body: dict, headers: dict[str, str]) -> JsonResponse:
    """A run that did not answer, as chat.completions reports it: 499 or 502."""
    status = 499 if body["status"] == "cancelled" else 502
    fusion = body["fusion"]
    return error(
        status,
        body["error"]["message"],
        type="upstream_error",
        code=fusion["failure_reason"] or fusion["status"],
        headers={"x-should-retry": "false", **headers},  # as views.chat_completions says
        fusion=fusion,
    )


@csrf_exempt
async def create_response(request):
    if request.method != "POST":
        return error(405, "Use POST.", code="method_not_allowed")
    checked = await in_db(views._check, request, read)
    if isinstance(checked, JsonResponse):
        return checked
    record, asked, panel, depth = checked
    started = await views.start_or_follow(request, record, asked, panel, depth, "responses")
    if isinstance(started, JsonResponse):
        return started
    run_id, conversation, replayed = started
    headers = views.replay_headers(replayed)
    subscribed = asyncio.Event()
    if asked.stream:
        return StreamingHttpResponse(
            _stream(asked, run_id, conversation, subscribed),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
    try:
        async for _ in final_text(run_id, conversation, subscribed):
            pass
    except asyncio.CancelledError:  # the client hung up: stop the run's calls
        await views.stop_shielded(run_id)
        raise
    body = await in_db(response_object, run_id, asked)
    if body["status"] in ("failed", "cancelled"):
        return _failure(body, headers)
    return JsonResponse(body, headers=headers)


class _Events:
    """Server-sent events numbered in order, as the Responses stream numbers them."""

    def __init__(self):
        self.sequence = 0

    def __call__(self, kind: str, **fields) -> str:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


async def _stream(asked: ResponseRequest, run_id: int, conversation: str, subscribed):
    event = _Events()
    item_id = message_id(run_id)
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    finished = False
    try:
        started = await in_db(response_object, run_id, asked)
        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        opened = False
        sent = ""
        last_sent = time.monotonic()
        async for kind, payload in final_text(run_id, conversation, subscribed):
            if kind == "text" and asked.response_format:
                continue  # JSON goes out checked, in one piece, at the end
            if kind == "text":
                if not opened:
                    yield _opening(event, run_id)
                    opened = True
                yield event("response.output_text.delta", **where, delta=payload, logprobs=[])
                sent += payload
                last_sent = time.monotonic()
            elif kind == "progress" and asked.progress:  # extension: what the panel is doing
                yield event("fusion.progress", event=payload)
            elif time.monotonic() - last_sent > views.KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
        finished = True
        body = await in_db(response_object, run_id, asked)
        if body["status"] in ("failed", "cancelled"):
            yield event("response.failed", response=body)
            return
        text = body["output"][0]["content"][0]["text"] if body["output"] else sent
        if not opened:
            yield _opening(event, run_id)
        if text.startswith(sent) and len(text) > len(sent):  # whatever the events missed
            yield event("response.output_text.delta", **where, delta=text[len(sent) :], logprobs=[])
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=_text_part(text))
        item = _message(run_id, text, body["status"])
        yield event("response.output_item.done", output_index=0, item=item)
        yield event(f"response.{body['status']}", response=body)  # completed or incomplete
    finally:
        if not finished:  # the client went away mid-stream: stop the run
            await views.stop_shielded(run_id)


def _opening(event: _Events, run_id: int) -> str:
    """The message item and its text part, opened before the first delta."""
    item = _message(run_id, "", "in_progress")
    return event("response.output_item.added", output_index=0, item=item) + event(
        "response.content_part.added",
        item_id=item["id"],
        output_index=0,
        content_index=0,
        part=_text_part(""),
    )

"""POST /v1/chat/completions and GET /v1/models: a panel behind one model id.

Async views on Daphne: a streamed answer goes out as chat.completion.chunk events;
a client that hangs up cancels its run, whose calls stop within a second.
"""

import asyncio
import json
import time

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from chat.db import in_db
from chat.models import Answer, Conversation, Run
from chat.services import start_run, stop_run
from panels.models import Panel
from panels.providers.base import DEPTH_HEADER

from . import keys
from .errors import BadRequest, error
from .follow import final_text
from .openapi import SPEC
from .request import CompletionRequest, parse

KEEP_ALIVE_S = 10


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def _authenticate(request):
    """(key record, None) or (None, error response)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None, error(
            401,
            "Missing API key: send `Authorization: Bearer <key>`.",
            type="authentication_error",
            code="missing_api_key",
        )
    record = keys.find(header.removeprefix("Bearer ").strip())
    if record is None:
        return None, error(
            401, "Invalid or revoked API key.", type="authentication_error", code="invalid_api_key"
        )
    return record, None


def _depth(request) -> int | None:
    raw = request.headers.get(DEPTH_HEADER, "0").strip() or "0"
    return int(raw) if raw.isdigit() else None


def _panel_for(model: str, user) -> Panel | None:
    slug = settings.API_DEFAULT_PANEL if model == "fusion" else model.removeprefix("fusion/")
    if not model.startswith("fusion/") and model != "fusion":
        return None
    return Panel.objects.reachable_by(user).filter(slug=slug).first()


def _check(request):
    """Everything before a run may start: the key, the depth, the size, the body,
    the panel, the rate. Returns (key, request, panel, depth) or an error response."""
    record, failure = _authenticate(request)
    if failure:
        return failure
    depth = _depth(request)
    if depth is None:
        return error(400, f"{DEPTH_HEADER} must be a whole number.", param=DEPTH_HEADER)
    if depth >= settings.FUSION_MAX_DEPTH:
        # 508 Loop Detected: a panel seat that points back at a fusion endpoint.
        return error(
            508,
            f"Fusion depth {depth} reached the limit of "
            f"{settings.FUSION_MAX_DEPTH}: a panel is calling fusion recursively.",
            type="fusion_depth_exceeded",
            code="fusion_depth_exceeded",
        )
    client = _redis()
    try:
        wait = keys.over_limit(client, record)
    finally:
        client.close()
    if wait is not None:
        return error(
            429,
            f"Rate limit of {settings.API_RATE_LIMIT_PER_MINUTE} requests a minute reached "
            "for this key.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    raw_length = request.headers.get("Content-Length") or "0"
    length = int(raw_length) if raw_length.isdigit() else 0
    limit = settings.API_MAX_BODY_BYTES
    try:
        body = b"" if length > limit else request.body
    except RequestDataTooBig:
        length = max(length, limit + 1)
    if length > limit or len(body) > limit:
        return error(413, f"The body is over {limit:,} bytes, the limit.", code="request_too_large")
    try:
        completion = parse(body)
    except BadRequest as bad:
        return bad.response()
    panel = _panel_for(completion.model, record.user)
    if panel is None:
        return error(
            404,
            f"The model `{completion.model}` does not exist or you do not have "
            "access to it. GET /v1/models lists yours.",
            param="model",
            code="model_not_found",
        )
    return record, completion, panel, depth


def _start(record, completion: CompletionRequest, panel: Panel, depth: int) -> tuple[int, str]:
    room = Conversation.objects.create(
        owner=record.user, panel=panel, title=completion.question[:60]
    )
    Panel.objects.filter(pk=panel.pk).update(use_count=panel.use_count + 1)
    extra = {
        "conversation": completion.messages,
        "depth": depth,
        "via": "api",
        "synthesizer_temperature": completion.temperature,
        "synthesizer_max_tokens": completion.max_tokens,
    }
    return start_run(room, completion.question, extra).run.pk, room.group_name


def _stop(run_id: int) -> None:
    stop_run(Run.objects.get(pk=run_id))


def _outcome(run_id: int, model: str) -> tuple[int, dict]:
    run = Run.objects.prefetch_related("answers").get(pk=run_id)
    answers = list(run.answers.all())
    final = run.final_answer
    fusion = {
        "run": run.pk,
        "panel": run.config.get("panel"),
        "status": run.status,
        "failure_reason": run.failure_reason or None,
        "failed_models": [
            a.model_name for a in answers if a.role == "seat" and a.status in ("failed", "late")
        ],
        "seats": [
            {
                "model": a.model_name,
                "status": a.status,
                "answer": a.text,
                "error": a.error or None,
                "usage": _usage([a]),
                "cost": _cost([a]),
            }
            for a in answers
            if a.role == Answer.Role.SEAT
        ],
        "analysis": run.analysis,
        "cost": _cost(answers),
        "cost_of_most_expensive_seat": None
        if run.solo_cost_usd is None
        else float(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
    }
    if run.status != Run.Status.DONE or final is None:
        status = 499 if run.status == Run.Status.CANCELLED else 502
        message = run.failure_detail or f"The run ended {run.status}."
        failure = {
            "message": message,
            "type": "upstream_error",
            "param": None,
            "code": run.failure_reason or run.status,
        }
        return status, {"error": failure, "fusion": fusion}
    return 200, {
        "id": f"chatcmpl-fusion-{run.pk}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": final.text},
                "finish_reason": _finish(final),
            }
        ],
        "usage": {**_usage(answers), "cost": _cost(answers)},
        "fusion": fusion,
    }


def _usage(answers) -> dict:
    prompt = sum(a.input_tokens or 0 for a in answers)
    completion = sum(a.output_tokens or 0 for a in answers)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _cost(answers) -> float | None:
    charged = [a for a in answers if a.input_tokens is not None]
    if any(a.cost_usd is None for a in charged):
        return None
    return float(sum(a.cost_usd for a in charged))


def _finish(answer: Answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


@csrf_exempt
async def chat_completions(request):
    if request.method != "POST":
        return error(405, "Use POST.", code="method_not_allowed")
    checked = await in_db(_check, request)
    if isinstance(checked, JsonResponse):
        return checked
    record, completion, panel, depth = checked
    run_holder: dict = {}
    subscribed = asyncio.Event()

    async def begin():
        run_holder["id"], run_holder["group"] = await in_db(
            _start, record, completion, panel, depth
        )

    if completion.stream:
        return StreamingHttpResponse(
            _sse(completion, begin, run_holder, subscribed),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    await begin()
    try:
        async for _ in final_text(run_holder["id"], run_holder["group"], subscribed):
            pass
    except asyncio.CancelledError:  # the client hung up: stop the run's calls
        await in_db(_stop, run_holder["id"])
        raise
    status, body = await in_db(_outcome, run_holder["id"], completion.model)
    return JsonResponse(body, status=status)


def _chunk(run_id: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {
        "id": f"chatcmpl-fusion-{run_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


async def _sse(completion: CompletionRequest, begin, run_holder: dict, subscribed):
    yield ": fusion panel working\n\n"  # a keep-alive comment before the panel answers
    await begin()
    run_id, model = run_holder["id"], completion.model
    first = True
    finished = False
    try:
        events = final_text(run_id, run_holder["group"], subscribed)
        last_sent = time.monotonic()
        async for kind, payload in events:
            if kind == "text":
                delta = {"role": "assistant", "content": payload} if first else {"content": payload}
                first = False
                yield _chunk(run_id, model, delta)
                last_sent = time.monotonic()
            elif completion.progress:
                yield _chunk(run_id, model, {}, fusion_progress=payload)
            elif time.monotonic() - last_sent > KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
        finished = True
        status, body = await in_db(_outcome, run_id, model)
        if status != 200:
            yield f"data: {json.dumps(body)}\n\n"
        else:
            if first:
                yield _chunk(run_id, model, {"role": "assistant", "content": ""})
            finish = body["choices"][0]["finish_reason"]
            yield _chunk(run_id, model, {}, finish)
            if completion.include_usage:
                usage_chunk = {
                    "id": f"chatcmpl-fusion-{run_id}",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": body["usage"],
                    "fusion": body["fusion"],
                }
                yield f"data: {json.dumps(usage_chunk)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not finished:  # the client went away mid-stream: stop the run
            await in_db(_stop, run_id)


async def models(request):
    record, failure = await in_db(_authenticate, request)
    if failure:
        return failure
    panels = await in_db(
        lambda: list(Panel.objects.visible_to(record.user).select_related("owner").order_by("slug"))
    )
    created = int(time.time())
    data = [{"id": "fusion", "object": "model", "created": created, "owned_by": "fusion-room"}]
    data += [
        {
            "id": f"fusion/{p.slug}",
            "object": "model",
            "created": int(p.created_at.timestamp()),
            "owned_by": p.owner.username if p.owner_id else "fusion-room",
            "name": p.name,
            "description": p.description,
        }
        for p in panels
    ]
    return JsonResponse({"object": "list", "data": data})


def openapi(request):
    return JsonResponse(SPEC)


def docs(request):
    context = {"spec": SPEC, "spec_json": json.dumps(SPEC, indent=2)}
    return render(request, "chat/api_docs.html", context)

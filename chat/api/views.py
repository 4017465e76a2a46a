"""POST /v1/chat/completions and GET /v1/models: a panel, or one model, behind one
model id (chat/api/answerers.py).

Async views on Daphne: a streamed answer goes out as chat.completion.chunk events;
a client that hangs up cancels its run, whose calls stop within a second.

Long on purpose: the two doors of /v1 (streamed and not) share one request's checks,
start and follow; split, each would repeat the order they must happen in.
"""

import asyncio
import json
import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from chat.engine import client_tools, in_web, tap
from chat.engine.admission import LimitReached
from chat.engine.db import in_db
from chat.engine.runs import start_conversation, stop_run, taken_here
from chat.models import Answer, Run
from panels.models import CatalogModel, Panel, solo_snapshot
from panels.providers.base import DEPTH_HEADER

from . import (
    answerers,
    auth,
    fusion_fields,
    fusion_plugin,
    idempotency,
    run_result,
    server_tools,
    tools,
)
from .conventions import counted
from .errors import BadRequest, error, limit_error
from .follow import final_text
from .openapi import SPEC
from .request import CompletionRequest, parse

# A comment at least this often while a stream is quiet: a client that went away is
# only noticed by the server when it writes (a reset with bytes unread is not
# reported sooner), and its run is stopped then.
KEEP_ALIVE_S = 1.0


def _refusal(refused: auth.Refused) -> JsonResponse:
    return error(
        refused.status,
        refused.message,
        type=refused.type,
        code=refused.code,
        headers=refused.headers,
    )


def _authenticate(request):
    """(key record, None) or (None, error response)."""
    try:
        return auth.key_from_header(request.headers.get("Authorization", "")), None
    except auth.Refused as refused:
        return None, _refusal(refused)


# The hosted Fusion's own depth header counts as ours: a caller that forwards it
# keeps its loop protection here. The deeper of the two is the depth.
OPENROUTER_DEPTH_HEADER = "X-OpenRouter-Fusion-Depth"


def _depth(request) -> int | None:
    depths = [
        (request.headers.get(name, "0").strip() or "0")
        for name in (DEPTH_HEADER, OPENROUTER_DEPTH_HEADER)
    ]
    # ASCII digits only: "²" is a digit to isdigit() but not to int().
    whole = all(d.isascii() and d.isdigit() for d in depths)
    return max(int(d) for d in depths) if whole else None


def _check(request, read: Callable[[bytes], CompletionRequest] = parse):
    """Everything before a run may start: the key, the depth, the size, the body,
    who answers, the rate. Returns (key, request, answerer, depth) or an error
    response. `read` turns the body into a CompletionRequest (/v1/responses brings
    its own)."""
    record, failure = _authenticate(request)
    if failure:
        return failure
    depth = _depth(request)
    if depth is None:
        return error(
            400,
            f"{DEPTH_HEADER} (or {OPENROUTER_DEPTH_HEADER}) must be a whole number.",
            param=DEPTH_HEADER,
        )
    if depth >= settings.FUSION_MAX_DEPTH:
        # 508 Loop Detected: a panel seat that points back at a fusion endpoint.
        return error(
            508,
            f"Fusion depth {depth} reached the limit of "
            f"{settings.FUSION_MAX_DEPTH}: a panel is calling fusion recursively.",
            type="fusion_depth_exceeded",
            code="fusion_depth_exceeded",
        )
    try:
        counted(request, auth.check_rate(record))
    except auth.Refused as refused:
        return _refusal(refused)
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
        completion = read(body)
        mode = server_tools.alias_mode(request.headers.get(server_tools.ALIAS_HEADER))
        fusion: answerers.Answerer | dict | None
        if completion.model == fusion_plugin.ALIAS and mode == "tool":
            # As OpenRouter means it: one model, the fusion tool attached.
            fusion, completion.server_tools = server_tools.alias(
                completion.server_tools, completion.adhoc, record.user
            )
        else:
            # OpenRouter Fusion's alias, plugin and our ad-hoc panels first (a dict:
            # an ad-hoc panel's run configuration), then the panels by name.
            fusion = fusion_plugin.answerer(completion.model, completion.adhoc, record.user)
    except BadRequest as bad:
        return bad.response()
    answerer = fusion or answerers.resolve(completion.model, record.user)
    if answerer is None:
        return error(
            404,
            f"The model `{completion.model}` does not exist or you do not have "
            "access to it. GET /v1/models lists yours.",
            param="model",
            code="model_not_found",
        )
    if completion.server_tools is not None:
        try:  # the fusion tool's panel resolved now: a bad model is refused, nothing run
            completion.server_config = server_tools.configuration(
                completion.server_tools, answerer, record.user
            )
        except BadRequest as bad:
            return bad.response()
    return record, completion, answerer, depth


def _start(
    record, completion: CompletionRequest, answerer: answerers.Answerer | dict, depth: int
) -> tuple[int, str, bool]:
    extra = {
        "api_key": record.pk,  # its budget, and its owner's, pay for this run
        "conversation": completion.messages,
        "depth": depth,
        "synthesizer_temperature": completion.temperature,
        "synthesizer_max_tokens": completion.max_tokens,
        **tools.settings_of(
            completion.tools, completion.tool_choice, completion.parallel_tool_calls
        ),
        **completion.server_config,
    }
    # Kept out of the run's configuration unless set, like a conversation run's.
    if completion.stop:
        extra["synthesizer_stop"] = list(completion.stop)
    if completion.seed is not None:
        extra["synthesizer_seed"] = completion.seed
    if completion.response_format:
        extra["response_format"] = completion.response_format
    message = start_conversation(
        record.user, answerer, completion.question, via="api", extra=extra, here=True
    )
    return message.run.pk, message.conversation.events_key, taken_here(message.run)


async def start_or_follow(
    request, record, completion: CompletionRequest, answerer, depth: int, door: str
) -> tuple[int, str, bool] | JsonResponse:
    """(run id, conversation, replayed): the run this request starts, or, when its
    Idempotency-Key came before, the run that one started (chat/api/idempotency.py).
    Or the response refusing it."""
    held = await in_db(idempotency.claim, request, record, door)
    if isinstance(held, JsonResponse):
        return held
    if isinstance(held, idempotency.Earlier):
        return held.run_id, held.conversation, True
    try:
        # Started before the response, so that a refusal is an HTTP error, not a
        # stream that opens with 200 and then fails.
        run_id, conversation, here = await in_db(_start, record, completion, answerer, depth)
    except BaseException as failure:
        if held:
            await asyncio.shield(in_db(idempotency.release, held))
        if isinstance(failure, LimitReached):
            return limit_error(failure)
        raise
    if here:  # one model alone: run in this process, no queue hop (chat/engine/in_web.py)
        in_web.start(run_id)
    if held:
        await in_db(idempotency.record, held, run_id, conversation)
    return run_id, conversation, False


def replay_headers(replayed: bool) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if replayed else {}


def _tools_refusal(completion: CompletionRequest, answerer: Panel | CatalogModel):
    """A 400 naming `tools` when the answerer cannot honour the caller's tools: they
    are never silently ignored."""
    if not completion.tools or completion.tool_choice == "none":
        return None
    config = answerer.snapshot() if isinstance(answerer, Panel) else solo_snapshot(answerer)
    if reason := client_tools.unsupported(config):
        return error(400, reason, param="tools", code="tools_unsupported")
    return None


def _stop(run_id: int) -> None:
    stop_run(Run.objects.get(pk=run_id))


async def stop_shielded(run_id: int) -> None:
    """Stop the run of a caller who went away. Called while the request's task is
    being torn down (cancelled, its generator closed), which may cancel it again:
    shielded, the stop is carried out whatever happens to the request."""
    await asyncio.shield(in_db(_stop, run_id))


def _outcome(run_id: int, model: str) -> tuple[int, dict]:
    run = Run.objects.prefetch_related("answers").get(pk=run_id)
    final = run.final_answer
    fusion = run_result.fusion(run)
    if run.status != Run.Status.DONE or final is None:
        status = 499 if run.status == Run.Status.CANCELLED else 502
        message = run.failure_detail or f"The run ended {run.status}."
        failure = {
            "message": message,
            "type": "upstream_error",
            "param": None,
            "code": run.failure_reason or run.status,
        }
        return status, {"error": failure, "fusion": fusion, **fusion_fields.fields(run)}
    return 200, {
        "id": f"chatcmpl-fusion-{run.pk}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": model,
        "choices": [{"index": 0, "message": _message(final), "finish_reason": _finish(final)}],
        "usage": run_result.usage(run),
        "fusion": fusion,
        **fusion_fields.fields(run),  # OpenRouter Fusion's analysis, responses, …
    }


def _message(answer: Answer) -> dict:
    if not answer.client_tool_calls:
        return {"role": "assistant", "content": answer.text}
    calls = tools.openai_calls(answer.client_tool_calls)
    return {"role": "assistant", "content": answer.text or None, "tool_calls": calls}


def _finish(answer: Answer) -> str:
    if answer.client_tool_calls:
        return "tool_calls"
    return "length" if answer.finish_reason == "length" else "stop"


@csrf_exempt
async def chat_completions(request):
    if request.method != "POST":
        return error(405, "Use POST.", code="method_not_allowed")
    checked = await in_db(_check, request)
    if isinstance(checked, JsonResponse):
        return checked
    record, completion, answerer, depth = checked
    if refused := await in_db(_tools_refusal, completion, answerer):
        return refused
    started = await start_or_follow(request, record, completion, answerer, depth, "chat")
    if isinstance(started, JsonResponse):
        return started
    run_holder: dict = {"id": started[0], "conversation": started[1]}
    # A run in this process (one model alone) hands its events over in memory.
    run_holder["tap"] = tap.take(started[0])
    subscribed = asyncio.Event()
    replayed = replay_headers(started[2])
    if completion.stream:
        return StreamingHttpResponse(
            _sse(completion, run_holder, subscribed),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **replayed},
        )
    try:
        following = final_text(
            run_holder["id"], run_holder["conversation"], subscribed, run_holder["tap"]
        )
        async for _ in following:
            pass
    except asyncio.CancelledError:  # the client hung up: stop the run's calls
        await stop_shielded(run_holder["id"])
        raise
    status, body = await in_db(_outcome, run_holder["id"], completion.model)
    response = JsonResponse(body, status=status, headers=replayed)
    if status != 200:
        # The run ended without an answer; sent again it would start another run
        # (and pay again): the SDKs that read this header do not retry.
        response["x-should-retry"] = "false"
    return response


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


async def _sse(completion: CompletionRequest, run_holder: dict, subscribed):
    yield ": fusion panel working\n\n"  # a keep-alive comment before the panel answers
    run_id, model = run_holder["id"], completion.model
    first = True
    finished = False
    try:
        events = final_text(run_id, run_holder["conversation"], subscribed, run_holder["tap"])
        last_sent = time.monotonic()
        async for kind, payload in events:
            if kind == "text" and completion.response_format:
                continue  # JSON is sent once checked, whole (chat/engine/json_modes.py)
            if kind == "text":
                delta = {"role": "assistant", "content": payload} if first else {"content": payload}
                first = False
                yield _chunk(run_id, model, delta)
                last_sent = time.monotonic()
            elif kind == "progress" and completion.progress:
                yield _chunk(run_id, model, {}, fusion_progress=payload)
            elif time.monotonic() - last_sent > KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
        finished = True
        status, body = await in_db(_outcome, run_id, model)
        if status != 200:
            yield f"data: {json.dumps(body)}\n\n"
        else:
            message = body["choices"][0]["message"]
            late: list[dict] = []  # what is sent only once the run is over
            if completion.response_format and message["content"]:
                late.append({"content": message["content"]})
            late += [
                {"tool_calls": [call]}
                for call in tools.call_deltas(message.get("tool_calls") or [])
            ]
            for delta in late:
                yield _chunk(run_id, model, {"role": "assistant", **delta} if first else delta)
                first = False
            if first:
                yield _chunk(run_id, model, {"role": "assistant", "content": ""})
            finish = body["choices"][0]["finish_reason"]
            openrouter = {k: body[k] for k in fusion_fields.FIELDS if k in body}
            yield _chunk(run_id, model, {}, finish, **openrouter)
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
            await stop_shielded(run_id)


def _models(request) -> JsonResponse:
    record, failure = _authenticate(request)
    if failure:
        return failure
    try:
        counted(request, auth.check_rate(record))
    except auth.Refused as refused:
        return _refusal(refused)
    return JsonResponse({"object": "list", "data": answerers.listing(record.user)})


async def models(request):
    return await in_db(_models, request)


def openapi(request):
    return JsonResponse(SPEC)


def docs(request):
    context = {"spec": SPEC, "spec_json": json.dumps(SPEC, indent=2)}
    return render(request, "chat/api_docs.html", context)

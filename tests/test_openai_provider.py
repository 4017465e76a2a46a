"""The OpenAI-compatible provider against a scripted server on a real socket."""

import json
from dataclasses import replace

import httpx
import pytest

from panels.providers import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    Finish,
    OpenAICompatibleProvider,
    ProviderError,
    TextDelta,
    Usage,
)
from tests.scripted_server import Reply, ScriptedServer

REQUEST = ChatRequest(
    model="m", messages=(ChatMessage("user", "Hello there"),), max_tokens=32, depth=1
)


async def collect(server: ScriptedServer, request: ChatRequest = REQUEST, api_key: str = ""):
    endpoint = Endpoint(kind="openai", base_url=server.base_url, api_key=api_key, name="Scripted")
    async with httpx.AsyncClient(timeout=5) as client:
        provider = OpenAICompatibleProvider(endpoint, client)
        return [event async for event in provider.stream(request)]


async def test_streams_text_skips_comments_and_stops_at_done(server):
    server.enqueue(
        Reply.stream(
            ["Hel", "lo", "!"],
            usage={"prompt_tokens": 7, "completion_tokens": 3, "cost": 0.0012},
            comments=["OPENROUTER PROCESSING", "ping"],
        )
    )
    events = await collect(server)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", "!"]
    assert events[-2] == Usage(input_tokens=7, output_tokens=3, estimated=False, cost=0.0012)
    assert events[-1] == Finish("stop")


async def test_request_carries_max_tokens_depth_and_key(server):
    server.enqueue(Reply.stream(["ok"]))
    await collect(server, api_key="sk-secret-1234")
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["max_tokens"] == 32
    assert sent["json"]["stream"] is True
    assert sent["headers"]["X-Fusion-Depth"] == "2"
    assert sent["headers"]["Authorization"] == "Bearer sk-secret-1234"
    assert not {"stop", "seed"} & sent["json"].keys()  # sent only when set


async def test_stop_and_seed_are_sent_when_set(server):
    server.enqueue(Reply.stream(["ok"]))
    await collect(server, replace(REQUEST, stop=("\n\n", "END"), seed=0))
    sent = server.requests[0]["json"]
    assert sent["stop"] == ["\n\n", "END"] and sent["seed"] == 0


async def test_counts_tokens_when_the_server_sends_no_usage(server):
    server.enqueue(Reply.stream(["a", "b", "c", "d"]))
    events = await collect(server)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.estimated is True
    assert usage.output_tokens == 4
    assert usage.input_tokens > 0


async def test_rate_limit_is_retryable_with_retry_after(server):
    server.enqueue(
        Reply(
            status=429,
            headers={"Retry-After": "3", "Content-Type": "application/json"},
            body=json.dumps({"error": {"message": "slow down", "code": "rate_limited"}}).encode(),
        )
    )
    with pytest.raises(ProviderError) as caught:
        await collect(server)
    error = caught.value
    assert (error.status, error.retryable, error.retry_after) == (429, True, 3.0)
    assert "slow down" in error.message and "Scripted" in error.message


async def test_retry_after_ms_wins_over_seconds(server):
    server.enqueue(Reply(status=503, headers={"retry-after-ms": "250", "Retry-After": "9"}))
    with pytest.raises(ProviderError) as caught:
        await collect(server)
    assert caught.value.retry_after == 0.25


async def test_bad_request_is_not_retryable_and_keeps_the_code(server):
    body = {"error": {"message": "too long", "code": "context_length_exceeded"}}
    server.enqueue(Reply(status=400, body=json.dumps(body).encode()))
    with pytest.raises(ProviderError) as caught:
        await collect(server)
    assert (caught.value.retryable, caught.value.code) == (False, "context_length_exceeded")


async def test_mid_stream_error_event(server):
    reply = Reply.stream(["partial"], done=False)
    reply.chunks.insert(1, b'data: {"error": {"message": "upstream overloaded"}}\n\n')
    server.enqueue(reply)
    seen = []
    with pytest.raises(ProviderError, match="upstream overloaded"):
        async for event in _stream(server):
            seen.append(event)
    assert seen == [TextDelta("partial")]


async def test_malformed_event_is_an_error_not_a_crash(server):
    server.enqueue(
        Reply(headers={"Content-Type": "text/event-stream"}, chunks=[b"data: {nope\n\n"])
    )
    with pytest.raises(ProviderError, match="malformed"):
        await collect(server)


async def test_non_stream_answer_is_refused_clearly(server):
    server.enqueue(Reply(headers={"Content-Type": "application/json"}, body=b"{}"))
    with pytest.raises(ProviderError, match="did not answer with a stream"):
        await collect(server)


async def test_connection_refused_is_retryable():
    endpoint = Endpoint(kind="openai", base_url="http://127.0.0.1:9/v1", name="Nowhere")
    async with httpx.AsyncClient(timeout=2) as client:
        provider = OpenAICompatibleProvider(endpoint, client)
        with pytest.raises(ProviderError) as caught:
            async for _ in provider.stream(REQUEST):
                pass
    assert caught.value.retryable and "could not reach Nowhere" in caught.value.message


async def _stream(server):
    endpoint = Endpoint(kind="openai", base_url=server.base_url, name="Scripted")
    async with httpx.AsyncClient(timeout=5) as client:
        async for event in OpenAICompatibleProvider(endpoint, client).stream(REQUEST):
            yield event


async def test_tool_call_pieces_are_joined_per_index(server):
    from panels.providers import ToolCall  # appended test; the import block above is shared

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()

    def piece(index: int, arguments: str, **first) -> dict:
        function = {"arguments": arguments}
        if first:
            function["name"] = first["name"]
            return {"tool_calls": [{"index": index, "id": first["id"], "function": function}]}
        return {"tool_calls": [{"index": index, "function": function}]}

    server.enqueue(
        Reply(
            headers={"Content-Type": "text/event-stream"},
            chunks=[
                chunk({"role": "assistant", **piece(0, "", id="call_a", name="search")}),
                chunk(piece(0, '{"q": ')),
                chunk(piece(0, '"fusion')),
                chunk(piece(0, ' conversation"}')),
                chunk(piece(1, '{"tz": ', id="call_b", name="clock")),
                chunk(piece(1, '"UTC"}')),
                chunk({}, finish="tool_calls"),
                b"data: [DONE]\n\n",
            ],
        )
    )
    events = await collect(server)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [
        ToolCall(id="call_a", name="search", arguments='{"q": "fusion conversation"}'),
        ToolCall(id="call_b", name="clock", arguments='{"tz": "UTC"}'),
    ]
    assert events[-1] == Finish("tool_calls")


async def test_a_callers_tool_choice_and_parallel_calls_go_with_its_tools(server):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    server.enqueue(Reply.stream(["ok"]), Reply.stream(["ok"]))
    request = replace(REQUEST, tools=(tool,), tool_choice=named, parallel_tool_calls=False)
    await collect(server, request)
    await collect(server, replace(REQUEST, tool_choice="required"))  # no tools: none of it
    sent = server.requests[0]["json"]
    assert sent["tools"] == [tool] and sent["tool_choice"] == named
    assert sent["parallel_tool_calls"] is False
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & server.requests[1]["json"].keys()

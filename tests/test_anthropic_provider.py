"""The native Anthropic Messages provider against a scripted server on a real socket."""

import json
from dataclasses import replace

import httpx
import pytest

from panels.providers import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    ErrorKind,
    Finish,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
    provider_for,
)
from panels.providers.anthropic import AnthropicProvider
from tests.scripted_server import Reply, ScriptedServer

REQUEST = ChatRequest(
    model="claude-x", messages=(ChatMessage("user", "Hello there"),), max_tokens=64, depth=1
)
SSE = {"Content-Type": "text/event-stream"}


def _sse(data: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def endpoint(server: ScriptedServer, api_key: str = "sk-ant-secret") -> Endpoint:
    return Endpoint(kind="anthropic", base_url=server.base_url, api_key=api_key, name="Anthropic")


async def collect(server: ScriptedServer, request: ChatRequest = REQUEST, api_key="sk-ant-secret"):
    async with httpx.AsyncClient(timeout=5) as client:
        provider = AnthropicProvider(endpoint(server, api_key), client)
        return [event async for event in provider.stream(request)]


async def failure(server: ScriptedServer) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(server)
    return caught.value


async def test_streams_text_then_usage_then_finish(server):
    server.enqueue(Reply.anthropic_stream(["Hel", "lo", "!"], input_tokens=12, output_tokens=5))
    events = await collect(server)
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta("!"),
        Usage(input_tokens=12, output_tokens=5, estimated=False),
        Finish("stop"),
    ]


async def test_provider_for_picks_the_anthropic_provider(server):
    async with httpx.AsyncClient() as client:
        assert isinstance(provider_for(endpoint(server), client), AnthropicProvider)


async def test_request_shape(server):
    server.enqueue(Reply.anthropic_stream(["ok"]))
    tool = {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    request = ChatRequest(
        model="claude-x",
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "First"),
            ChatMessage("user", "Second"),
            ChatMessage("system", "Cite sources."),
            ChatMessage("assistant", "Answer"),
            ChatMessage("user", "Again"),
        ),
        max_tokens=64,
        temperature=0.3,
        depth=2,
        tools=(tool,),
    )
    await collect(server, request)
    sent = server.requests[0]
    assert sent["path"] == "/v1/messages"
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["x-api-key"] == "sk-ant-secret"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-fusion-depth"] == "3"
    assert "authorization" not in headers
    assert sent["json"] == {
        "model": "claude-x",
        "max_tokens": 64,
        "stream": True,
        "system": "Be brief.\n\nCite sources.",
        "messages": [
            {"role": "user", "content": "First\n\nSecond"},
            {"role": "assistant", "content": "Answer"},
            {"role": "user", "content": "Again"},
        ],
        "temperature": 0.3,
        "tools": [
            {
                "name": "search",
                "description": "Search the web",
                "input_schema": tool["function"]["parameters"],
            }
        ],
    }


async def test_no_key_no_system_no_temperature(server):
    server.enqueue(Reply.anthropic_stream(["ok"]))
    await collect(server, api_key="")
    sent = server.requests[0]
    assert "x-api-key" not in {k.lower() for k in sent["headers"]}
    assert not {"system", "temperature", "tools", "stop_sequences"} & sent["json"].keys()


async def test_stop_goes_as_stop_sequences_and_the_seed_is_not_sent(server):
    """The Messages API names stop sequences differently, refuses whitespace-only
    ones, and has no seed."""
    server.enqueue(Reply.anthropic_stream(["ok"]))
    server.enqueue(Reply.anthropic_stream(["ok"]))
    await collect(server, replace(REQUEST, stop=("\n\n", "END", " "), seed=7))
    await collect(server, replace(REQUEST, stop=("\n",)))
    sent = server.requests[0]["json"]
    assert sent["stop_sequences"] == ["END"]
    assert "seed" not in sent and "stop" not in sent
    assert "stop_sequences" not in server.requests[1]["json"]


async def test_tool_use_parts_are_joined_into_one_call(server):
    server.enqueue(
        Reply.anthropic_stream(
            ["Let me look."],
            stop="tool_use",
            tool_uses=[
                ("toolu_1", "search", ['{"q": ', '"fusion', ' conversation"}']),
                ("toolu_2", "clock", []),
            ],
        )
    )
    events = await collect(server)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [
        ToolCall(id="toolu_1", name="search", arguments='{"q": "fusion conversation"}'),
        ToolCall(id="toolu_2", name="clock", arguments="{}"),
    ]
    assert json.loads(calls[0].arguments) == {"q": "fusion conversation"}
    assert events[0] == TextDelta("Let me look.")
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "refusal"),
    ],
)
async def test_stop_reason_mapping(server, stop, reason):
    server.enqueue(Reply.anthropic_stream(["x"], stop=stop))
    events = await collect(server)
    assert events[-1] == Finish(reason)


async def test_usage_is_estimated_when_the_stream_gives_none(server):
    chunks = [
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "a"},
            }
        ),
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "b"},
            }
        ),
        _sse({"type": "future_event", "whatever": 1}, "future_event"),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    server.enqueue(Reply(headers=SSE, chunks=chunks))
    events = await collect(server)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.estimated is True
    assert usage.output_tokens == 2 and usage.input_tokens > 0
    assert events[-1] == Finish("stop")


async def test_mid_stream_overloaded_error(server):
    reply = Reply.anthropic_stream(["partial", "never"])
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    reply.chunks[4:] = [_sse(error, "error")]  # after the first text delta
    server.enqueue(reply)
    seen = []
    with pytest.raises(ProviderError) as caught:
        async with httpx.AsyncClient(timeout=5) as client:
            async for event in AnthropicProvider(endpoint(server), client).stream(REQUEST):
                seen.append(event)
    assert seen == [TextDelta("partial")]
    error = caught.value
    assert error.message == "Anthropic failed mid-answer: Overloaded"
    assert (error.kind, error.retryable, error.code) == (
        ErrorKind.STREAM,
        True,
        "overloaded_error",
    )


async def test_mid_stream_rate_limit_and_invalid_request_errors(server):
    for error_type, kind, retryable in [
        ("rate_limit_error", ErrorKind.RATE_LIMITED, True),
        ("invalid_request_error", ErrorKind.STREAM, False),
    ]:
        body = {"type": "error", "error": {"type": error_type, "message": "nope"}}
        server.enqueue(Reply(headers=SSE, chunks=[_sse(body, "error")]))
        error = await failure(server)
        assert (error.kind, error.retryable) == (kind, retryable)


async def test_bad_key_is_an_auth_error(server):
    body = {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    server.enqueue(Reply.json(401, body))
    error = await failure(server)
    assert error.kind == ErrorKind.AUTH and error.retryable is False
    assert "Anthropic" in error.message and "refused the key" in error.message
    assert "invalid x-api-key" in error.message
    assert error.code == "authentication_error"


async def test_overloaded_529_is_retryable(server):
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.enqueue(Reply.json(529, body))
    error = await failure(server)
    assert (error.status, error.retryable, error.kind) == (529, True, ErrorKind.SERVER)
    assert "Overloaded" in error.message


async def test_malformed_data_line_is_an_error(server):
    reply = Reply.anthropic_stream(["ok"])
    reply.chunks.insert(3, b"event: content_block_delta\ndata: {nope\n\n")
    server.enqueue(reply)
    error = await failure(server)
    assert "malformed" in error.message
    assert (error.kind, error.retryable) == (ErrorKind.STREAM, True)


async def test_stream_closed_before_message_stop_is_an_error(server):
    reply = Reply.anthropic_stream(["cut"])
    reply.chunks = reply.chunks[:-2]  # no message_delta, no message_stop; a clean close
    server.enqueue(reply)
    error = await failure(server)
    assert (error.kind, error.retryable) == (ErrorKind.STREAM, True)


async def test_connection_cut_mid_stream_is_retryable(server):
    server.enqueue(Reply.anthropic_stream(["a", "b", "c"], drop_after=4))
    error = await failure(server)
    assert error.retryable is True


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, None, None),
    ],
)
async def test_a_callers_tool_choice_in_anthropics_words(server, choice, parallel, sent):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    server.enqueue(Reply.anthropic_stream(["ok"]))
    request = replace(REQUEST, tools=(tool,), tool_choice=choice, parallel_tool_calls=parallel)
    await collect(server, request)
    assert server.requests[0]["json"].get("tool_choice") == sent

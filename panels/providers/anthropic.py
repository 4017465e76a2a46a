"""Streaming from Anthropic's native Messages API.

The request differs from OpenAI's (a top-level system prompt, strictly alternating
turns, `input_schema` tools) and the stream is a sequence of typed events: content
blocks open, grow by deltas and close; usage comes at the start (input) and in
`message_delta` (output, cumulative).
"""

import json
from collections.abc import AsyncGenerator

import httpx

from .base import (
    DEPTH_HEADER,
    ChatMessage,
    ChatRequest,
    Endpoint,
    ErrorKind,
    Event,
    Finish,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)
from .errors import too_many_tool_calls, tool_arguments_too_long
from .http import open_sse, where
from .tokens import estimate_tokens

API_VERSION = "2023-06-01"

# Anthropic's stop reasons in the OpenAI vocabulary the rest of the code speaks.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}

# Mid-stream error types worth another try; anything else (e.g. invalid_request_error)
# would fail the same way again.
RETRYABLE_ERRORS = {"overloaded_error", "api_error", "rate_limit_error"}


def _content(message: ChatMessage) -> tuple[str, str | list[dict]]:
    """A message's role and content: plain text, or content blocks for tool turns."""
    if message.role == "tool":
        block = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        return "user", [block]
    if not message.tool_calls:
        return message.role, message.content
    blocks: list[dict] = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return message.role, blocks


def _joined(first: str | list[dict], second: str | list[dict]) -> str | list[dict]:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"

    def blocks(content: str | list[dict]) -> list[dict]:
        return [{"type": "text", "text": content}] if isinstance(content, str) else content

    return blocks(first) + blocks(second)


def convert_tool(tool: dict) -> dict:
    """OpenAI's {"type": "function", "function": {...}} to Anthropic's tool shape."""
    function = tool.get("function", tool)
    converted = {
        "name": function["name"],
        # input_schema is required by Anthropic; OpenAI allows leaving parameters out.
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def convert_tool_choice(choice: str | dict | None, parallel: bool | None) -> dict | None:
    """OpenAI's tool_choice and parallel_tool_calls in Anthropic's words. ("none"
    never arrives here: the tools are then not sent at all.) Anthropic has no JSON
    mode: a response_format is asked for in the prompt and checked afterwards."""
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        converted = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        converted = {"type": "any" if choice == "required" else "auto"}
    if parallel is False:
        converted["disable_parallel_tool_use"] = True
    return converted


class AnthropicProvider:
    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient):
        self.endpoint = endpoint
        self.client = client

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        headers = {
            "anthropic-version": API_VERSION,
            "Accept": "text/event-stream",
            DEPTH_HEADER: str(request.depth + 1),
        }
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        return headers

    def _body(self, request: ChatRequest) -> dict:
        system = [m.content for m in request.messages if m.role == "system"]
        messages: list[dict] = []
        for m in request.messages:
            if m.role == "system":
                continue
            # Tool turns are content blocks: tool_use in the assistant's turn, and
            # tool_result in the user's turn that follows.
            role, content = _content(m)
            if not content:
                continue  # the API rejects empty text turns
            if messages and messages[-1]["role"] == role:  # turns must alternate
                messages[-1]["content"] = _joined(messages[-1]["content"], content)
            else:
                messages.append({"role": role, "content": content})
        body = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "stream": True,
            "messages": messages,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [convert_tool(t) for t in request.tools]
            if choice := convert_tool_choice(request.tool_choice, request.parallel_tool_calls):
                body["tool_choice"] = choice
        # The Messages API refuses a whole request over one stop sequence of
        # whitespace only (OpenAI's accept "\n\n"): those are left out.
        if stops := [s for s in request.stop if s.strip()]:
            body["stop_sequences"] = stops
        # The Messages API has no seed: it is not sent (a sampling hint, not a promise).
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        name = where(self.endpoint)
        text_chunks = 0
        input_tokens: int | None = None
        output_tokens: int | None = None
        finish: str | None = None
        tools: dict[int, dict] = {}  # open tool_use blocks by content-block index
        tool_count = 0
        stopped = False
        async with open_sse(
            self.client,
            self.endpoint,
            "/messages",
            self._body(request),
            self._headers(request),
            request.model,
            request.connect_timeout_s,
            request.limits.event_bytes,
        ) as source:
            async for sse in source.aiter_sse():
                if not sse.data.strip():
                    continue
                try:
                    data = json.loads(sse.data)
                except ValueError:
                    raise ProviderError(
                        f"{name} sent a malformed event: {sse.data[:120]!r}",
                        retryable=True,
                        kind=ErrorKind.STREAM,
                    ) from None
                if not isinstance(data, dict):
                    continue
                kind = data.get("type") or sse.event
                if kind == "error":
                    raise _stream_error(name, data)
                if kind == "message_start":
                    usage = (data.get("message") or {}).get("usage") or {}
                    if usage.get("input_tokens") is not None:
                        input_tokens = int(usage["input_tokens"])
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        tool_count += 1
                        if tool_count > request.limits.tool_calls:
                            raise too_many_tool_calls(name, request.limits)
                        tools[data.get("index", 0)] = {
                            "id": block.get("id", ""),
                            "name": block.get("name", ""),
                            "parts": [],
                            "chars": 0,
                        }
                    elif block.get("type") == "text" and block.get("text"):
                        text_chunks += 1
                        yield TextDelta(block["text"])
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text_chunks += 1
                        yield TextDelta(delta["text"])
                    elif delta.get("type") == "input_json_delta" and (
                        call := tools.get(data.get("index", 0))
                    ):
                        part = delta.get("partial_json") or ""
                        call["chars"] += len(part)
                        if call["chars"] > request.limits.tool_argument_chars:
                            raise tool_arguments_too_long(name, call["name"], request.limits)
                        call["parts"].append(part)
                elif kind == "content_block_stop":
                    if call := tools.pop(data.get("index", 0), None):
                        arguments = "".join(call["parts"]) or "{}"
                        yield ToolCall(id=call["id"], name=call["name"], arguments=arguments)
                elif kind == "message_delta":
                    reason = (data.get("delta") or {}).get("stop_reason")
                    finish = FINISH_REASONS.get(reason, reason) if reason else finish
                    usage = data.get("usage") or {}
                    if usage.get("output_tokens") is not None:
                        output_tokens = int(usage["output_tokens"])
                elif kind == "message_stop":
                    stopped = True
                    break
                # ping, thinking blocks and event types added later are ignored.

        if not stopped:
            # A clean close before message_stop still means a cut-off answer.
            raise ProviderError(
                f"{name} cut the stream off before the answer ended",
                retryable=True,
                kind=ErrorKind.STREAM,
            )
        estimated = input_tokens is None or output_tokens is None
        if input_tokens is None:
            input_tokens = estimate_tokens("".join(m.content for m in request.messages))
        if output_tokens is None:
            output_tokens = text_chunks
        yield Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=estimated)
        yield Finish(finish or "stop")


def _stream_error(name: str, data: dict) -> ProviderError:
    """An `error` event: the request was accepted, then failed mid-answer."""
    error = data.get("error")
    error = error if isinstance(error, dict) else {"message": str(error or "unknown error")}
    code = str(error.get("type") or "")
    message = str(error.get("message") or code or "unknown error")[:300]
    return ProviderError(
        f"{name} failed mid-answer: {message}",
        retryable=code in RETRYABLE_ERRORS,
        kind=ErrorKind.RATE_LIMITED if code == "rate_limit_error" else ErrorKind.STREAM,
        code=code,
        provider_message=message,
    )

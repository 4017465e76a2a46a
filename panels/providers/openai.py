"""Streaming chat completions from any OpenAI-compatible server.

Covers OpenAI, OpenRouter, Together, Groq, DeepSeek, Gemini's compatible endpoint,
Mistral, vLLM, Ollama, LM Studio and llama.cpp's server (the bundled local models).
httpx-sse already drops comment lines such as `: ping` and `: OPENROUTER PROCESSING`.
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
    StreamLimits,
    TextDelta,
    ToolCall,
    Usage,
)
from .errors import (
    is_retryable_code,
    too_many_tool_calls,
    tool_arguments_too_long,
    upstream_message,
)
from .http import open_sse, where
from .tokens import estimate_tokens


def _message(message: ChatMessage) -> dict:
    """One message in OpenAI's shape, tool turns included."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    body: dict = {"role": message.role, "content": message.content}
    if message.tool_calls:
        body["content"] = message.content or None
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return body


class _ToolCallParts:
    """OpenAI streams a tool call in pieces keyed by index; join them, within the
    request's limits on how many calls and how long their arguments."""

    def __init__(self, name: str, limits: StreamLimits):
        self.name = name
        self.limits = limits
        self.calls: dict[int, dict] = {}

    def add(self, delta: dict) -> None:
        index = delta.get("index", 0)
        if index not in self.calls and len(self.calls) >= self.limits.tool_calls:
            raise too_many_tool_calls(self.name, self.limits)
        call = self.calls.setdefault(index, {"id": "", "name": "", "args": [], "chars": 0})
        call["id"] = delta.get("id") or call["id"]
        function = delta.get("function") or {}
        call["name"] = function.get("name") or call["name"]
        if arguments := function.get("arguments"):
            call["chars"] += len(arguments)
            if call["chars"] > self.limits.tool_argument_chars:
                raise tool_arguments_too_long(self.name, call["name"], self.limits)
            call["args"].append(arguments)

    def complete(self) -> list[ToolCall]:
        return [
            ToolCall(id=c["id"], name=c["name"], arguments="".join(c["args"]) or "{}")
            for _, c in sorted(self.calls.items())
        ]


class OpenAICompatibleProvider:
    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient):
        self.endpoint = endpoint
        self.client = client

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", DEPTH_HEADER: str(request.depth + 1)}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        return headers

    def _body(self, request: ChatRequest) -> dict:
        body = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = list(request.tools)
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.response_format:
            body["response_format"] = request.response_format
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        name = where(self.endpoint)
        content_chunks = 0
        usage: Usage | None = None
        finish: str | None = None
        ended = False
        tool_parts = _ToolCallParts(name, request.limits)
        async with open_sse(
            self.client,
            self.endpoint,
            "/chat/completions",
            self._body(request),
            self._headers(request),
            request.model,
            request.connect_timeout_s,
            request.limits.event_bytes,
        ) as source:
            async for sse in source.aiter_sse():
                data = sse.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    ended = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise ProviderError(
                        f"{name} sent a malformed event: {data[:120]!r}",
                        retryable=True,
                        kind=ErrorKind.STREAM,
                    ) from None
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    message, code = upstream_message(json.dumps(chunk).encode())
                    raise ProviderError(
                        f"{name} failed mid-answer: {message}",
                        retryable=is_retryable_code(code),
                        kind=ErrorKind.STREAM,
                        code=code,
                        provider_message=message,
                    )
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if text := delta.get("content"):
                        content_chunks += 1
                        yield TextDelta(text)
                    for part in delta.get("tool_calls") or []:
                        tool_parts.add(part)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                if u := chunk.get("usage"):
                    usage = Usage(
                        input_tokens=int(u.get("prompt_tokens") or 0),
                        output_tokens=int(u.get("completion_tokens") or 0),
                        cost=u.get("cost"),
                    )

        if not ended and finish is None:
            raise ProviderError(
                f"{name} ended the stream before the answer was complete",
                retryable=True,
                kind=ErrorKind.STREAM,
            )
        for call in tool_parts.complete():
            yield call
        if usage is None:
            # Some servers send no usage on streams: one chunk is about one token
            # there; elsewhere this is an estimate, and marked as one.
            prompt_chars = "".join(m.content for m in request.messages)
            usage = Usage(
                input_tokens=estimate_tokens(prompt_chars),
                output_tokens=content_chunks,
                estimated=True,
            )
        yield usage
        yield Finish(finish or "stop")

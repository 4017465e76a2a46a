"""Streaming chat completions from any OpenAI-compatible server.

Covers OpenAI, OpenRouter, Together, Groq, DeepSeek, vLLM, Ollama, LM Studio and
llama.cpp's server (the bundled local models). SSE parsing is httpx-sse's, which
already drops comment lines such as `: ping` and `: OPENROUTER PROCESSING`.
"""

import json
import math
from collections.abc import AsyncIterator

import httpx
from httpx_sse import SSEError, aconnect_sse

from .base import (
    DEPTH_HEADER,
    ChatRequest,
    Endpoint,
    Event,
    Finish,
    ProviderError,
    TextDelta,
    Usage,
)

RETRYABLE_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
_ERROR_BODY_LIMIT = 4096


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds form)."""
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if seconds := headers.get("retry-after"):
        try:
            return max(0.0, float(seconds))
        except ValueError:
            return None  # an HTTP date: rare from LLM APIs; fall back to backoff
    return None


def _error_message(body: bytes) -> tuple[str, str]:
    """(message, code) out of an OpenAI-style error body, or the raw text."""
    text = body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300], ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or text)[:300], str(error.get("code") or "")
    return str(error)[:300], ""


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters a token) for servers that report no usage."""
    return math.ceil(len(text) / 4) if text else 0


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
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        url = self.endpoint.base_url.rstrip("/") + "/chat/completions"
        where = self.endpoint.name or self.endpoint.base_url
        content_chunks = 0
        usage: Usage | None = None
        finish: str | None = None
        try:
            async with aconnect_sse(
                self.client,
                "POST",
                url,
                json=self._body(request),
                headers=self._headers(request),
            ) as source:
                response = source.response
                if response.status_code >= 400:
                    body = await response.aread()
                    message, code = _error_message(body)
                    raise ProviderError(
                        f"{where} answered HTTP {response.status_code}: {message}",
                        retryable=response.status_code in RETRYABLE_STATUSES,
                        status=response.status_code,
                        code=code,
                        retry_after=parse_retry_after(response.headers),
                    )
                async for sse in source.aiter_sse():
                    data = sse.data.strip()
                    if not data:
                        continue
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise ProviderError(
                            f"{where} sent a malformed event: {data[:120]!r}", retryable=True
                        ) from None
                    if "error" in chunk:
                        message, code = _error_message(json.dumps(chunk).encode())
                        raise ProviderError(
                            f"{where} failed mid-answer: {message}", retryable=True, code=code
                        )
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            content_chunks += 1
                            yield TextDelta(text)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = Usage(
                            input_tokens=int(u.get("prompt_tokens") or 0),
                            output_tokens=int(u.get("completion_tokens") or 0),
                            cost=u.get("cost"),
                        )
        except SSEError as exc:
            raise ProviderError(
                f"{where} did not answer with a stream: {exc}", retryable=False
            ) from None
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{where} timed out ({type(exc).__name__})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"could not reach {where}: {exc or type(exc).__name__}", retryable=True
            ) from None

        if usage is None:
            # llama.cpp's server sends no usage on streams: one chunk is one token
            # there; elsewhere this is an estimate, and marked as one.
            prompt_chars = "".join(m.content for m in request.messages)
            usage = Usage(
                input_tokens=estimate_tokens(prompt_chars),
                output_tokens=content_chunks,
                estimated=True,
            )
        yield usage
        yield Finish(finish or "stop")

"""Model providers behind one small async interface.

    provider = provider_for(endpoint, client)
    async for event in provider.stream(request):
        ...  # TextDelta, Usage, Finish

Errors are always ProviderError, carrying whether a retry may help.
"""

import httpx

from .anthropic import AnthropicProvider
from .base import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    ErrorKind,
    Event,
    Finish,
    Provider,
    ProviderError,
    StreamLimits,
    TextDelta,
    ToolCall,
    Usage,
)
from .openai import OpenAICompatibleProvider


def provider_for(endpoint: Endpoint, client: httpx.AsyncClient) -> Provider:
    if endpoint.kind == "openai":
        return OpenAICompatibleProvider(endpoint, client)
    if endpoint.kind == "anthropic":
        return AnthropicProvider(endpoint, client)
    raise ProviderError(
        f"Unknown provider kind {endpoint.kind!r}.", retryable=False, kind=ErrorKind.UNAVAILABLE
    )


__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Endpoint",
    "ErrorKind",
    "Event",
    "Finish",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderError",
    "StreamLimits",
    "TextDelta",
    "ToolCall",
    "Usage",
    "provider_for",
]

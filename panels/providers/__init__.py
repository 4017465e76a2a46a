"""Model providers behind one small async interface.

    provider = provider_for(endpoint, client)
    async for event in provider.stream(request):
        ...  # TextDelta, Usage, Finish

Errors are always ProviderError, carrying whether a retry may help.
"""

from .base import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    Event,
    Finish,
    Provider,
    ProviderError,
    TextDelta,
    Usage,
)
from .openai import OpenAICompatibleProvider


def provider_for(endpoint: Endpoint, client) -> Provider:
    if endpoint.kind == "openai":
        return OpenAICompatibleProvider(endpoint, client)
    raise ProviderError(f"Unknown provider kind {endpoint.kind!r}.", retryable=False)


__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Endpoint",
    "Event",
    "Finish",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderError",
    "TextDelta",
    "Usage",
    "provider_for",
]

"""The shapes every provider speaks: a request in, a stream of typed events out."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# Depth of nested fusion calls; every outgoing call carries the incremented value
# so a panel that points back at a fusion endpoint cannot recurse forever.
DEPTH_HEADER = "X-Fusion-Depth"


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float | None = None
    depth: int = 0  # the incoming depth; the provider sends depth + 1


@dataclass(frozen=True)
class Endpoint:
    """Where a model is served. `api_key` is plaintext only in memory, never logged."""

    kind: str  # "openai" (any OpenAI-compatible server); "anthropic" arrives later
    base_url: str
    api_key: str = field(default="", repr=False)
    name: str = ""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    # True when the server sent no usage and we counted ourselves.
    estimated: bool = False
    cost: float | None = None  # provider-reported cost in USD, when given


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop", "length", "tool_calls", ...


Event = TextDelta | Usage | Finish


class ProviderError(Exception):
    """One error type for every provider failure, worded for a person."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.code = code
        self.retry_after = retry_after


class Provider(Protocol):
    def stream(self, request: ChatRequest) -> AsyncIterator[Event]: ...

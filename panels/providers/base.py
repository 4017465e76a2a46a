"""The shapes every provider speaks: a request in, a stream of typed events out."""

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Depth of nested fusion calls; every outgoing call carries the incremented value
# so a panel that points back at a fusion endpoint cannot recurse forever.
DEPTH_HEADER = "X-Fusion-Depth"


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    # An assistant turn that called tools, and a tool turn answering one call.
    tool_calls: tuple["ToolCall", ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class StreamLimits:
    """How much of an upstream's stream this process may hold at once, besides the
    answer's text (which panels/calls.py caps as it arrives).

    An upstream is someone else's server, and a user's own provider may be hostile:
    without these, one SSE line that never ends, or one tool call's arguments that
    never end, would grow one string for as long as the upstream cared to send.
    """

    # One SSE event (every line of it): a legitimate event carries one delta, or at
    # most a whole answer in one piece, JSON-escaped.
    event_bytes: int = 4 * 1024 * 1024
    tool_calls: int = 32  # a seat may make 16 at most (chat/engine/seats.py)
    tool_argument_chars: int = 200_000  # one call's arguments


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float | None = None
    depth: int = 0  # the incoming depth; the provider sends depth + 1
    # Tools in OpenAI's function format: {"type": "function", "function": {...}}.
    tools: tuple[dict, ...] = ()
    # OpenAI's response_format, passed as is (e.g. {"type": "json_object"}).
    response_format: dict | None = None
    # How long to wait for the TCP/TLS connection; the other limits live in calls.py.
    connect_timeout_s: float = 10.0
    limits: StreamLimits = StreamLimits()
    # Sequences that end the answer (OpenAI's `stop`, Anthropic's `stop_sequences`)
    # and a seed for reproducible sampling where the upstream supports one; an API
    # caller's choices for the call that writes the final answer. Sent only when set.
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # OpenAI's tool_choice ("auto", "required", {"type": "function", ...}) and
    # parallel_tool_calls, for a caller's own tools; None: the server's default.
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a model is served. `api_key` is plaintext only in memory, never logged."""

    kind: str  # "openai" (any OpenAI-compatible server) | "anthropic"
    base_url: str
    api_key: str = field(default="", repr=False)
    name: str = ""
    # User-supplied URLs may only reach public addresses (see netguard.py).
    public_only: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """One complete tool call, the same shape for every provider kind."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


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


Event = TextDelta | ToolCall | Usage | Finish


class ErrorKind(StrEnum):
    AUTH = "auth"  # the key was refused
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMITED = "rate_limited"
    CONTEXT_LENGTH = "context_length"
    BAD_REQUEST = "bad_request"
    SERVER = "server_error"
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    STREAM = "stream_error"  # malformed or cut-off stream, mid-stream error event
    REFUSED_URL = "refused_url"  # SSRF guard: the base URL may not be reached
    COOLDOWN = "cooldown"  # skipped: the model is cooling down after failures
    CANCELLED = "cancelled"
    REPETITION = "repetition"  # the model fell into a loop and was cut off
    UNAVAILABLE = "unavailable"  # no such model or provider configured
    TOO_LARGE = "too_large"  # the upstream sent more than an answer may hold; cut off


class ProviderError(Exception):
    """One error type for every provider failure, worded for a person.

    `message` is what a person reads ("OpenRouter refused the key: 401 …");
    `provider_message` is the upstream's own words, when it gave any.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        kind: ErrorKind = ErrorKind.SERVER,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
        provider_message: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.provider_message = provider_message

    def as_dict(self) -> dict:
        return {
            "kind": str(self.kind),
            "message": self.message,
            "status": self.status,
            "retryable": self.retryable,
        }


class Provider(Protocol):
    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]: ...

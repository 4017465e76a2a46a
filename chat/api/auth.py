"""Who is calling: one bearer-key check and one rate limit for every programmatic
door — the `/v1` API, MCP over HTTP at `/mcp`, and MCP over stdio (whose key comes
from the environment instead of a header)."""

from dataclasses import dataclass, field

from chat.engine.live import shared_sync_redis
from chat.models import ApiKey

from . import keys


@dataclass
class Refused(Exception):
    """A caller turned away, with what to tell them."""

    status: int
    message: str
    code: str
    type: str = "authentication_error"
    headers: dict[str, str] = field(default_factory=dict)


def key_from_header(header: str) -> ApiKey:
    """The active key of an `Authorization: Bearer <key>` header, or Refused (401)."""
    if not header.startswith("Bearer "):
        raise Refused(
            401, "Missing API key: send `Authorization: Bearer <key>`.", "missing_api_key"
        )
    return key_from_value(header.removeprefix("Bearer ").strip())


def key_from_value(value: str) -> ApiKey:
    record = keys.find(value) if value else None
    if record is None:
        raise Refused(401, "Invalid or revoked API key.", "invalid_api_key")
    return record


def check_rate(record: ApiKey) -> keys.RateWindow:
    """Count this request; Refused (429, with Retry-After) when it is over the owner's
    limit this minute. Returns the window's numbers for the x-ratelimit-* headers."""
    window = keys.count_request(shared_sync_redis(), record)
    if window.exceeded:
        raise Refused(
            429,
            f"Rate limit of {window.limit} requests a minute reached; "
            "it counts every API key of yours together.",
            "rate_limit_exceeded",
            type="rate_limit_error",
            headers={"Retry-After": str(window.reset_s + 1), **window.headers()},
        )
    return window


def caller(header: str) -> ApiKey:
    """Authenticate and count one request: the whole check for a request with a header."""
    record = key_from_header(header)
    check_rate(record)
    return record

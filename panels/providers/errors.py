"""Turning an upstream's HTTP error, or a stream that passed a limit, into a
ProviderError a person can act on."""

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from .base import ErrorKind, ProviderError, StreamLimits

RETRYABLE_STATUSES = {408, 409, 425, 429}
# "Not implemented", "version not supported" and a fusion loop (508) are final.
NOT_RETRYABLE_5XX = {501, 505, 508}


def is_retryable_status(status: int) -> bool:
    # Every other 5xx, Cloudflare's 520-524 and Anthropic's 529 included, is transient.
    return status in RETRYABLE_STATUSES or (status >= 500 and status not in NOT_RETRYABLE_5XX)


def is_retryable_code(code: str) -> bool:
    """For errors reported inside a stream: a numeric code is an HTTP status."""
    return is_retryable_status(int(code)) if code.isdigit() else True


# How much of an error body is read at all, and parsed: a person reads a few hundred
# characters of it, and an upstream may send gigabytes where an error was expected.
ERROR_BODY_LIMIT = 8192


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds form)."""
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


def upstream_message(body: bytes) -> tuple[str, str]:
    """(message, code) from an OpenAI- or Anthropic-style error body, else its text."""
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        if text.lstrip().lower().startswith(("<!doctype", "<html")):
            return "an HTML page instead of an API answer (is the base URL right?)", ""
        return text[:300], ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or text
        code = error.get("code") or error.get("type") or ""
        return str(message)[:300], str(code)
    return str(error)[:300], ""


_CONTEXT_NUMBERS = re.compile(r"(\d[\d,]*)\D+?(\d[\d,]*)\s*tokens", re.I)


def error_from_status(
    where: str, status: int, body: bytes, headers: httpx.Headers, model: str
) -> ProviderError:
    message, code = upstream_message(body)
    retry_after = parse_retry_after(headers)
    lowered = f"{message} {code}".lower()
    if status in (401, 403):
        kind, text = ErrorKind.AUTH, f"{where} refused the key: {status} {message}"
    elif code == "context_length_exceeded" or (
        # llama.cpp's server: 400 "request (9030 tokens) exceeds the available context
        # size (8192 tokens)", type exceed_context_size_error.
        "context" in lowered and ("length" in lowered or "window" in lowered or "size" in lowered)
    ):
        kind = ErrorKind.CONTEXT_LENGTH
        text = f"context too long for {model} at {where}: {message}"
    elif "model" in lowered and (status == 404 or "not found" in lowered or "exist" in lowered):
        kind, text = ErrorKind.MODEL_NOT_FOUND, f"model not found at {where}: {model} ({message})"
    elif status == 404:
        kind = ErrorKind.BAD_REQUEST
        text = (
            f"{where} has nothing at this address (404: {message}); check the base URL, "
            "which usually ends in /v1"
        )
    elif status == 429:
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        kind, text = ErrorKind.RATE_LIMITED, f"{where} is rate limiting: {message}{wait}"
    elif status >= 500 or is_retryable_status(status):
        kind, text = ErrorKind.SERVER, f"{where} failed with HTTP {status}: {message}"
    else:
        kind, text = ErrorKind.BAD_REQUEST, f"{where} rejected the request: {status} {message}"
    return ProviderError(
        text,
        retryable=is_retryable_status(status),
        kind=kind,
        status=status,
        code=code,
        retry_after=retry_after,
        provider_message=message,
    )


def error_from_transport(where: str, exc: httpx.HTTPError) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(
            f"{where} timed out ({type(exc).__name__})", retryable=True, kind=ErrorKind.TIMEOUT
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProviderError(
            f"{where} cut the stream off: {exc}", retryable=True, kind=ErrorKind.STREAM
        )
    detail = str(exc) or type(exc).__name__
    return ProviderError(
        f"could not reach {where}: {detail}", retryable=True, kind=ErrorKind.CONNECTION
    )


def too_many_tool_calls(where: str, limits: StreamLimits) -> ProviderError:
    return ProviderError(
        f"{where} asked for more than {limits.tool_calls} tool calls in one answer; "
        "the answer was cut off there",
        retryable=False,
        kind=ErrorKind.TOO_LARGE,
    )


def tool_arguments_too_long(where: str, tool: str, limits: StreamLimits) -> ProviderError:
    return ProviderError(
        f"{where} wrote arguments for {tool or 'a tool'} longer than "
        f"{limits.tool_argument_chars:,} characters; the answer was cut off there",
        retryable=False,
        kind=ErrorKind.TOO_LARGE,
    )

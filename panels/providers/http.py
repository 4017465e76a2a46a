"""Opening an upstream SSE stream: the one place both provider kinds meet HTTP.

Redirects are never followed; a user's endpoint is resolved, checked and pinned to
a public address first (netguard.py); HTTP and transport failures become typed
ProviderErrors. Nothing an upstream sends is read without a bound: an error body
stops at a few kB, a stream event at `StreamLimits.event_bytes` (sse.py).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from . import netguard
from .base import Endpoint, ErrorKind, ProviderError, StreamLimits
from .errors import ERROR_BODY_LIMIT, error_from_status, error_from_transport
from .sse import EventStream

# Building an SSL context reads the CA bundle (~10 ms): build it once, share it.
SSL_CONTEXT = httpx.create_ssl_context()


def where(endpoint: Endpoint) -> str:
    return endpoint.name or endpoint.base_url


def redact(body: bytes, api_key: str) -> bytes:
    """Some APIs echo the key they refused; it must not reach an error message."""
    if api_key and len(api_key) >= 8:
        body = body.replace(api_key.encode(), b"[key]")
    return body


def encoding_of(response: httpx.Response) -> str | None:
    """The body's Content-Encoding when it is not plain. We ask for none: httpx would
    inflate each network read whole (a 211 KB gzip became 100 MB) before any of our
    counts see it, so a compressed body is refused, not read."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return encoding if encoding not in ("", "identity") else None


async def read_error_body(response: httpx.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """The start of a body, never more than `limit` bytes; leaving the response's
    `async with` then closes the connection instead of reading the rest."""
    if encoding := encoding_of(response):
        return f"(a {encoding}-compressed body, not read)".encode()
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    body: dict,
    headers: dict[str, str],
    model: str,
    connect_timeout_s: float | None = None,
    max_event_bytes: int = StreamLimits.event_bytes,
) -> AsyncIterator[EventStream]:
    url = endpoint.base_url.rstrip("/") + path
    headers = {
        **dict(endpoint.extra_headers),
        **headers,
        "Cache-Control": "no-store",
        # A compressed body is inflated a whole network read at a time, up to a
        # thousand times its size: the caps on what is held count inflated bytes,
        # so ask for none.
        "Accept-Encoding": "identity",
    }
    extensions: dict = {}
    if endpoint.public_only:
        target = await netguard.pin(url)
        url = target.url
        headers["Host"] = target.host_header
        extensions = target.extensions
        # httpcore pools connections by address: never hand a connection made for
        # one user's host to another host that pins to the same address.
        headers["Connection"] = "close"
    name = where(endpoint)
    try:
        async with client.stream(
            "POST",
            url,
            json=body,
            headers=headers,
            extensions=extensions,
            follow_redirects=False,
            # Only the connection has an httpx timeout: first-token, idle-gap and
            # total limits are enforced around the stream (panels/calls.py).
            timeout=httpx.Timeout(None, connect=connect_timeout_s or 10.0),
        ) as response:
            if response.is_redirect:
                raise ProviderError(
                    f"{name} redirected to {response.headers.get('location', '?')}; "
                    "redirects are not followed: fix the base URL",
                    retryable=False,
                    kind=ErrorKind.BAD_REQUEST,
                    status=response.status_code,
                )
            if response.status_code >= 400:
                raw = redact(await read_error_body(response), endpoint.api_key)
                raise error_from_status(name, response.status_code, raw, response.headers, model)
            if encoding := encoding_of(response):
                raise ProviderError(
                    f"{name} sent its stream {encoding}-compressed although none was asked "
                    "for; it is not read (inflated, it could be far larger than it looks)",
                    retryable=False,
                    kind=ErrorKind.STREAM,
                )
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type.partition(";")[0]:
                raise ProviderError(
                    f"{name} did not answer with a stream (got "
                    f"{content_type or 'no content type'}): is the base URL right?",
                    retryable=False,
                    kind=ErrorKind.STREAM,
                )
            yield EventStream(response, name, max_event_bytes)
    except ProviderError as error:
        raise _scrubbed(error, endpoint.api_key) from None
    except httpx.HTTPError as exc:
        raise _scrubbed(error_from_transport(name, exc), endpoint.api_key) from None
    except (UnicodeError, ValueError) as exc:
        # e.g. a header that cannot be encoded; never quote the request back.
        raise ProviderError(
            f"{name}: the request could not be sent ({type(exc).__name__}); check the key "
            "and the base URL for unusual characters.",
            retryable=False,
            kind=ErrorKind.BAD_REQUEST,
        ) from None


def _scrubbed(error: ProviderError, api_key: str) -> ProviderError:
    if api_key and len(api_key) >= 8:
        error.message = error.message.replace(api_key, "[key]")
        error.provider_message = error.provider_message.replace(api_key, "[key]")
        error.args = (error.message,)
    return error

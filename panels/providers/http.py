"""Opening an upstream SSE stream: the one place both provider kinds meet HTTP.

Redirects are never followed; a user's endpoint is resolved, checked and pinned to
a public address first (netguard.py); HTTP and transport failures become typed
ProviderErrors.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from httpx_sse import EventSource, SSEError, aconnect_sse

from . import netguard
from .base import Endpoint, ErrorKind, ProviderError
from .errors import error_from_status, error_from_transport

# Building an SSL context reads the CA bundle (~10 ms): build it once, share it.
SSL_CONTEXT = httpx.create_ssl_context()


def where(endpoint: Endpoint) -> str:
    return endpoint.name or endpoint.base_url


def redact(body: bytes, api_key: str) -> bytes:
    """Some APIs echo the key they refused; it must not reach an error message."""
    if api_key and len(api_key) >= 8:
        body = body.replace(api_key.encode(), b"[key]")
    return body


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    body: dict,
    headers: dict[str, str],
    model: str,
    connect_timeout_s: float | None = None,
) -> AsyncIterator[EventSource]:
    url = endpoint.base_url.rstrip("/") + path
    headers = {**dict(endpoint.extra_headers), **headers}
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
        async with aconnect_sse(
            client,
            "POST",
            url,
            json=body,
            headers=headers,
            extensions=extensions,
            follow_redirects=False,
            # Only the connection has an httpx timeout: first-token, idle-gap and
            # total limits are enforced around the stream (panels/calls.py).
            timeout=httpx.Timeout(None, connect=connect_timeout_s or 10.0),
        ) as source:
            response = source.response
            if response.is_redirect:
                raise ProviderError(
                    f"{name} redirected to {response.headers.get('location', '?')}; "
                    "redirects are not followed: fix the base URL",
                    retryable=False,
                    kind=ErrorKind.BAD_REQUEST,
                    status=response.status_code,
                )
            if response.status_code >= 400:
                raw = redact(await response.aread(), endpoint.api_key)
                raise error_from_status(name, response.status_code, raw, response.headers, model)
            yield source
    except ProviderError as error:
        raise _scrubbed(error, endpoint.api_key) from None
    except SSEError:
        raise ProviderError(
            f"{name} did not answer with a stream (got "
            f"{response.headers.get('content-type', 'no content type')}): is the base URL right?",
            retryable=False,
            kind=ErrorKind.STREAM,
        ) from None
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

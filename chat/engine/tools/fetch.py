"""web_fetch: a web page's main text, fetched the way a careful crawler would.

The same SSRF guard as users' own providers (panels/providers/netguard.py): the
host is resolved and every address must be public, the request is pinned to the
address checked, and redirects are followed by hand, each hop checked again (so a
public page cannot bounce the fetch to 127.0.0.1 or the LAN). Only text types are
read, at most WEB_FETCH_MAX_BYTES of them within WEB_FETCH_TIMEOUT_S, and the main
text (trafilatura) is cut to TOOL_RESULT_MAX_CHARS with a note. Excluded domains are refused.
"""

import asyncio
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

from panels.providers import ProviderError, netguard
from panels.providers.http import encoding_of

from .base import Tool, ToolEnv, ToolResult, clipped

TEXT_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "application/json",
)
MAX_REDIRECTS = 5
USER_AGENT = "FusionRoom/1 (web_fetch tool; +https://github.com/)"


class Refused(Exception):
    """The fetch may not go there; the message says why, for the model to read."""


def is_excluded(host: str, excluded: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in excluded)


def _without_fragment(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit(parts._replace(fragment=""))


async def _aim(url: str, env: ToolEnv) -> tuple[str, dict, dict]:
    """(URL to request, headers, extensions) for one hop, after every check."""
    try:
        url = netguard.check_url_shape(_without_fragment(url))
    except ValueError as exc:
        raise Refused(f"The URL is refused: {exc}.") from None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_excluded(host, env.excluded_domains):
        raise Refused(f"{host} is on this panel's excluded domains: it is not fetched.")
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": ", ".join(TEXT_TYPES),
        "Connection": "close",
        "Accept-Encoding": "identity",  # see _get: a compressed page is not read
    }
    if f"{host}:{parts.port or netguard.DEFAULT_PORTS[parts.scheme]}" in set(
        settings.TOOLS_PRIVATE_HOSTS
    ):
        return url, headers, {}  # an administrator's own host (an intranet, a test server)
    try:
        target = await netguard.pin(url)
    except ProviderError as exc:
        reason = exc.message.split(": only public")[0].removeprefix("the base URL is refused: ")
        raise Refused(
            f"The page is refused: {reason}; private and local addresses are never fetched."
        ) from None
    return target.url, {**headers, "Host": target.host_header}, target.extensions


async def _get(url: str, env: ToolEnv) -> tuple[str, str, bytes, bool]:
    """(final URL, content type, body up to the cap, whether it was cut)."""
    for _hop in range(MAX_REDIRECTS + 1):
        aimed, headers, extensions = await _aim(url, env)
        async with env.http.stream(
            "GET", aimed, headers=headers, extensions=extensions, follow_redirects=False
        ) as response:
            if response.is_redirect:
                location = response.headers.get("location", "")
                if not location:
                    raise Refused(f"The page redirected (HTTP {response.status_code}) nowhere.")
                url = urljoin(url, location)
                continue
            if response.status_code >= 400:
                raise Refused(f"The page answered HTTP {response.status_code}.")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in TEXT_TYPES:
                raise Refused(
                    f"The page is {kind or 'of an unknown type'}: only text pages are read."
                )
            if encoding := encoding_of(response):
                # httpx would inflate each network read whole before the cap sees it
                # (a gzip bomb held 184 MB behind a 2 MB cap).
                raise Refused(
                    f"The page was sent {encoding}-compressed although none was asked for; "
                    "it is not read."
                )
            body, cut = bytearray(), False
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > settings.WEB_FETCH_MAX_BYTES:
                    del body[settings.WEB_FETCH_MAX_BYTES :]
                    cut = True
                    break
            return url, kind, bytes(body), cut
    raise Refused(f"The page redirected more than {MAX_REDIRECTS} times.")


def _main_text(kind: str, body: bytes) -> tuple[str, str]:
    """(title, main text) of a page; CPU work, run off the event loop."""
    text = body.decode("utf-8", "replace")
    if kind not in ("text/html", "application/xhtml+xml"):
        return "", text
    import trafilatura

    extracted = trafilatura.bare_extraction(text, include_comments=False, with_metadata=True)
    if extracted is None:
        return "", ""
    data = extracted.as_dict() if hasattr(extracted, "as_dict") else dict(extracted)
    return data.get("title") or "", data.get("text") or ""


async def fetch_page(url: str, env: ToolEnv) -> ToolResult:
    host = urlsplit(url).hostname or url[:60]
    try:
        async with asyncio.timeout(settings.WEB_FETCH_TIMEOUT_S):
            final, kind, body, cut = await _get(url, env)
    except Refused as refused:
        return ToolResult(str(refused), f"refused {host}", error=str(refused))
    except TimeoutError:
        message = f"The page took longer than {settings.WEB_FETCH_TIMEOUT_S} s: not fetched."
        return ToolResult(message, f"timed out: {host}", error=message)
    except httpx.HTTPError as exc:
        message = f"The page could not be fetched ({type(exc).__name__})."
        return ToolResult(message, f"failed: {host}", error=message)
    title, text = await asyncio.to_thread(_main_text, kind, body)
    if not text.strip():
        message = "The page has no readable main text."
        return ToolResult(message, f"fetched {host}: no text", error=message)
    limit = settings.WEB_FETCH_MAX_BYTES
    note = f"\n\n[The page is over {limit:,} bytes: only its start was read.]" if cut else ""
    parts = urlsplit(final)
    shown = f"{parts.hostname}{parts.path}"[:60]
    return ToolResult(
        f"{title}\n{final}\n\n" + clipped(text, settings.TOOL_RESULT_MAX_CHARS) + note,
        f"fetched {shown}, {_size(len(body))}",
        sources=[{"title": title or shown, "url": final}],
    )


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 1024 else f"{count / 1024:,.0f} kB"


async def _run(arguments: dict, env: ToolEnv) -> ToolResult:
    return await fetch_page(arguments["url"], env)


TOOL = Tool(
    name="web_fetch",
    description="Fetch a web page (http or https) and read its main text.",
    parameters={
        "type": "object",
        "properties": {"url": {"type": "string", "description": "The page's address."}},
        "required": ["url"],
    },
    run=_run,
)

"""web_search: title, URL and snippet of the top results, from the backend the site
chose (SEARCH_BACKEND): SearXNG's JSON API (self-hosted, keyless), Brave Search or
Tavily (with keys), or `ddgs` (keyless, needs the internet and the package). Results
from excluded domains are dropped; results are cached in Redis for a short time;
with no backend reachable the tool says so and the seat answers without it.
"""

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from .base import Tool, ToolEnv, ToolResult
from .fetch import is_excluded

MAX_RESULTS = 5


@dataclass
class Hit:
    title: str
    url: str
    snippet: str


class SearchUnavailable(Exception):
    pass


async def _searxng(query: str, http: httpx.AsyncClient) -> list[Hit]:
    response = await http.get(
        settings.SEARXNG_URL.rstrip("/") + "/search",
        params={"q": query, "format": "json"},
        headers={"Accept": "application/json"},
    )
    response.raise_for_status()
    return [
        Hit(r.get("title", ""), r.get("url", ""), r.get("content", ""))
        for r in response.json().get("results", [])
    ]


async def _brave(query: str, http: httpx.AsyncClient) -> list[Hit]:
    response = await http.get(
        settings.BRAVE_SEARCH_URL,
        params={"q": query, "count": MAX_RESULTS * 2},
        headers={"Accept": "application/json", "X-Subscription-Token": settings.BRAVE_API_KEY},
    )
    response.raise_for_status()
    results = (response.json().get("web") or {}).get("results", [])
    return [Hit(r.get("title", ""), r.get("url", ""), r.get("description", "")) for r in results]


async def _tavily(query: str, http: httpx.AsyncClient) -> list[Hit]:
    response = await http.post(
        settings.TAVILY_SEARCH_URL,
        json={"query": query, "max_results": MAX_RESULTS * 2},
        headers={"Authorization": f"Bearer {settings.TAVILY_API_KEY}"},
    )
    response.raise_for_status()
    return [
        Hit(r.get("title", ""), r.get("url", ""), r.get("content", ""))
        for r in response.json().get("results", [])
    ]


async def _ddgs(query: str, http: httpx.AsyncClient) -> list[Hit]:
    try:
        from ddgs import DDGS
    except ImportError:
        raise SearchUnavailable("the ddgs package is not installed (pip install ddgs)") from None

    def search() -> list[dict]:
        return list(DDGS().text(query, max_results=MAX_RESULTS * 2))

    return [
        Hit(r.get("title", ""), r.get("href", ""), r.get("body", ""))
        for r in await asyncio.to_thread(search)
    ]


BACKENDS = {"searxng": _searxng, "brave": _brave, "tavily": _tavily, "ddgs": _ddgs}
# What one search costs, when the backend charges for it (USD).
PRICES = {"brave": Decimal("0.005"), "tavily": Decimal("0.008")}


def _cache_key(backend: str, query: str) -> str:
    digest = hashlib.sha256(f"{backend}\n{query.strip().lower()}".encode()).hexdigest()[:32]
    return f"fr:search:{digest}"


async def search(query: str, env: ToolEnv) -> ToolResult:
    backend = settings.SEARCH_BACKEND
    if backend not in BACKENDS:
        message = (
            "Web search is not set up on this server (SEARCH_BACKEND is none): answer without it."
        )
        return ToolResult(message, "search unavailable", error=message)
    key, hits, cost = _cache_key(backend, query), None, Decimal(0)
    with contextlib.suppress(Exception):  # a cache that cannot answer is a miss, no failure
        if cached := await env.redis.get(key):
            hits = [Hit(**h) for h in json.loads(cached)]
    if hits is None:
        try:
            async with asyncio.timeout(settings.SEARCH_TIMEOUT_S):
                hits = await BACKENDS[backend](query, env.http)
        except (httpx.HTTPError, SearchUnavailable, TimeoutError, ValueError) as exc:
            reason = _reason(exc)
            message = (
                f"Web search is unavailable right now ({backend}: {reason}): answer without it."
            )
            return ToolResult(message, f"search failed: {reason}", error=message)
        cost = PRICES.get(backend, Decimal(0))
        with contextlib.suppress(Exception):  # a cache that cannot store is no failure
            await env.redis.set(
                key, json.dumps([h.__dict__ for h in hits]), ex=settings.SEARCH_CACHE_TTL_S
            )
    kept = [
        h
        for h in hits
        if h.url and not is_excluded(urlsplit(h.url).hostname or "", env.excluded_domains)
    ]
    kept = kept[:MAX_RESULTS]
    if not kept:
        return ToolResult(
            f"No results for “{query}”.", f"“{query[:40]}” → no results", cost_usd=cost
        )
    text = "\n\n".join(
        f"[{i}] {h.title}\n{h.url}\n{h.snippet[:300]}" for i, h in enumerate(kept, 1)
    )
    return ToolResult(
        text,
        f"“{query[:40]}” → {len(kept)} result{'s' if len(kept) != 1 else ''}",
        sources=[{"title": h.title, "url": h.url} for h in kept],
        cost_usd=cost,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return "rate limited (429)" if status == 429 else f"HTTP {status}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {settings.SEARCH_TIMEOUT_S} s"
    if isinstance(exc, SearchUnavailable):
        return str(exc)
    return type(exc).__name__


async def _run(arguments: dict, env: ToolEnv) -> ToolResult:
    return await search(arguments["query"], env)


TOOL = Tool(
    name="web_search",
    description="Search the web; returns the top results' titles, addresses and snippets.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to search for."}},
        "required": ["query"],
    },
    run=_run,
)

"""Text that a database cannot keep, caught at the edge with the field named.

PostgreSQL refuses NUL (U+0000) in text columns, and no UTF-8 database can store a
lone surrogate (which JSON's `\\ud800` escapes can produce). SQLite would take both
and PostgreSQL would raise a 500 deep inside a save; so every door that takes text
from a person — form posts and query strings (the middleware below), the API's JSON,
recipes, MCP tool arguments — asks this module first and refuses with a message
that says which field and what to do.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.utils.decorators import sync_and_async_middleware
from django.utils.html import escape

# The API and MCP check their own JSON bodies, where they can name the JSON path.
# The conversation search (chat/search.py) stores nothing and reads past a NUL: a search
# for one finds what the other words find, or says nothing was found.
SKIPPED_PREFIXES = ("/v1/", "/mcp", "/search/")


def problem(text: str) -> str | None:
    """Why `text` cannot be stored, in words; None when it can."""
    if "\x00" in text:
        return "contains a NUL character (U+0000), which cannot be stored; remove it"
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return "contains an unpaired surrogate (invalid Unicode), which cannot be stored"
    return None


def find(value, path: str) -> tuple[str, str] | None:
    """The first (field path, problem) inside a JSON-like value, keys included."""
    if isinstance(value, str):
        found = problem(value)
        return (path, found) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (found := problem(key)):
                return where, found
            if hit := find(item, where):
                return hit
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if hit := find(item, f"{path}[{index}]"):
                return hit
    return None


def _form_problem(request: HttpRequest) -> tuple[str, str] | None:
    if request.path.startswith(SKIPPED_PREFIXES):
        return None
    for data in (request.GET, request.POST if request.method == "POST" else QueryDict()):
        for key in data:
            if hit := find({key: data.getlist(key)}, ""):
                field, message = hit
                return field.split("[", 1)[0], message
    return None


def _refusal(request: HttpRequest, field: str, message: str) -> HttpResponse:
    text = f"The field “{field}” {message}. Correct it and send it again."
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": text, "field": field}, status=400)
    return HttpResponse(
        f"<!doctype html><title>Bad request</title><p>{escape(text)}</p>",
        status=400,
        content_type="text/html; charset=utf-8",
    )


@sync_and_async_middleware
def refuse_unstorable_text(get_response: Callable):
    """A 400 that names the field, before any view tries to save what cannot be kept."""
    import asyncio

    if asyncio.iscoroutinefunction(get_response):

        async def middleware(request):
            if hit := _form_problem(request):
                return _refusal(request, *hit)
            return await get_response(request)

    else:

        def middleware(request):
            if hit := _form_problem(request):
                return _refusal(request, *hit)
            return get_response(request)

    return middleware

"""Headers every /v1 response carries, named as OpenAI's API names them.

- `X-Request-Id`: the caller's own, when it is a sane token, else a new one; on
  errors too, so a caller can quote it and an operator find it in the logs
  (every /v1 request is logged with it).
- `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
  `x-ratelimit-reset-requests`: the numbers of the user's rate window (chat/api/
  keys.py), once a view has counted the request; a response before that (a
  missing key) has none, as nothing was counted.

A middleware rather than code in each view, so that a new /v1 endpoint, Django's
own 404 and a crash's 500 carry them as well.
"""

import logging
import re
import uuid
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from .keys import RateWindow

log = logging.getLogger(__name__)

PREFIX = "/v1/"
REQUEST_ID = "X-Request-Id"
# What a caller's id may look like to be echoed (and logged): a token, not prose.
SANE_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")
# Where a view leaves the request's rate window for its response (request.META is
# the request's own dict of server values; the dotted key cannot be a header's).
RATE_WINDOW = "fusionroom.rate_window"


def request_id(given: str) -> str:
    return given if SANE_ID.fullmatch(given) else f"req_{uuid.uuid4().hex}"


def counted(request: HttpRequest, window: RateWindow) -> None:
    """This request was counted in `window`: its response says so."""
    request.META[RATE_WINDOW] = window


def _finish(request: HttpRequest, response: HttpResponseBase, rid: str) -> HttpResponseBase:
    response[REQUEST_ID] = rid
    window = request.META.get(RATE_WINDOW)
    if isinstance(window, RateWindow):
        for name, value in window.headers().items():
            response[name] = value
    log.info("%s %s %s request_id=%s", request.method, request.path, response.status_code, rid)
    return response


@sync_and_async_middleware
def api_headers(get_response: Callable):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            if not request.path.startswith(PREFIX):
                return await get_response(request)
            rid = request_id(request.headers.get(REQUEST_ID, ""))
            return _finish(request, await get_response(request), rid)

    else:

        def middleware(request):
            if not request.path.startswith(PREFIX):
                return get_response(request)
            rid = request_id(request.headers.get(REQUEST_ID, ""))
            return _finish(request, get_response(request), rid)

    return middleware

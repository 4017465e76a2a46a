"""One event loop per worker process, shared by every run the process executes.

Celery's threads pool hands each run to a thread; that thread only submits the run
to this loop and waits. Many loops in many threads would fight over the GIL (each
switch can cost milliseconds) and each would open its own Redis and HTTP
connections; one loop keeps hundreds of upstream streams on a few warm connections
and one scheduler.
"""

import asyncio
import threading
from collections.abc import Coroutine

import httpx
import redis.asyncio as aioredis

from panels.providers.http import SSL_CONTEXT

from . import live

# One client per event loop; per-call limits live in panels/calls.py.
POOL_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=50)

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_clients: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, aioredis.Redis]] = {}


def _start() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="run-loop", daemon=True).start()
            _loop = loop
    return _loop


def run(coroutine: Coroutine):
    """Run `coroutine` on the shared loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, _start()).result()


_adopted: set[asyncio.AbstractEventLoop] = set()


def adopt(loop: asyncio.AbstractEventLoop) -> None:
    """Runs on `loop` (a web process's, chat/engine/in_web.py) share its clients too,
    as a worker's share the run loop's: a client a run would cost a pool and a TLS
    context per one-model request."""
    _adopted.add(loop)


def is_shared_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return loop is _loop or loop in _adopted


def make_http_client() -> httpx.AsyncClient:
    # trust_env off: a proxy from the environment would bypass the SSRF pinning.
    return httpx.AsyncClient(
        limits=POOL_LIMITS, follow_redirects=False, trust_env=False, verify=SSL_CONTEXT
    )


def shared_clients() -> tuple[httpx.AsyncClient, aioredis.Redis]:
    """The shared loop's HTTP and Redis clients (call from inside that loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = (make_http_client(), live.redis_client(max_connections=100))
    return _clients[loop]

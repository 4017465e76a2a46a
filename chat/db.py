"""Database access from inside a run's event loop.

The ORM is synchronous; a run is a coroutine. Each call runs in a worker thread
and closes that thread's connection afterwards, so the short-lived executor
threads of a run never leave connections behind.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


async def in_db(fn: Callable[..., T], *args) -> T:
    def call() -> T:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)

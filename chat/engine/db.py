"""Database access from inside a run's event loop.

The ORM is synchronous; a run is a coroutine. A run does its database work in one
thread of its own (`database_thread`), so its queries reuse one connection instead
of opening one per call. With PostgreSQL, each call hands its connection back to
the pool at once, so hundreds of waiting runs do not hold hundreds of connections.
"""

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.db import connection, connections

T = TypeVar("T")
_executor: ContextVar[ThreadPoolExecutor | None] = ContextVar("run_db_thread", default=None)


@asynccontextmanager
async def database_thread() -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-db")
    token = _executor.set(executor)
    try:
        yield
    finally:
        _executor.reset(token)
        await asyncio.get_running_loop().run_in_executor(executor, connections.close_all)
        executor.shutdown(wait=False)


# SQLite lets one writer in at a time, and a writer that finds the file locked
# sleeps and tries again (1, 2, 5, 10, 15… ms: SQLite's busy handler), so when
# every run of a worker ends its seats at once, each write waited several of those
# sleeps after the lock was long free. The runs of one process take turns here
# instead: the next is woken the moment the one before is done.
_sqlite_turn = threading.Lock()


def _call_and_release(fn: Callable[..., T], *args) -> T:
    if connection.vendor == "sqlite":
        with _sqlite_turn:
            return fn(*args)
    try:
        return fn(*args)
    finally:
        connections.close_all()  # back to the pool


def _call_and_close(fn: Callable[..., T], *args) -> T:
    try:
        return fn(*args)
    finally:
        connections.close_all()


async def in_db(fn: Callable[..., T], *args) -> T:
    executor = _executor.get()
    if executor is None:  # outside a run: a fresh thread, and no connection left behind
        return await asyncio.to_thread(_call_and_close, fn, *args)
    call = functools.partial(_call_and_release, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)

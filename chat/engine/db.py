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


# With SQLite, a run's database thread is kept for the next run, its connection
# open: opening one (and its PRAGMAs) was a fifth of taking a run (issue 26's
# profile). At most this many wait, idle, per process.
_IDLE_SQLITE_THREADS = 32
_idle: list[ThreadPoolExecutor] = []
_idle_lock = threading.Lock()


def _take_thread() -> ThreadPoolExecutor:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-db")


def _let_go(keep: bool) -> bool:
    """In the run's database thread, at its end: whether the thread may wait for the
    next run (its SQLite connection sound, nothing left open); else its connections
    are closed."""
    sound = not connection.in_atomic_block and not connection.errors_occurred
    if keep and connection.vendor == "sqlite" and sound:
        return True
    connections.close_all()
    return False


@asynccontextmanager
async def database_thread() -> AsyncIterator[None]:
    executor = _take_thread()
    token = _executor.set(executor)
    try:
        yield
    finally:
        _executor.reset(token)
        with _idle_lock:
            room = len(_idle) < _IDLE_SQLITE_THREADS
        kept = await asyncio.get_running_loop().run_in_executor(executor, _let_go, room)
        if kept:
            with _idle_lock:
                _idle.append(executor)
        else:
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
        if connection.vendor == "sqlite":
            # Kept for the thread's next call: opening a SQLite connection (and its
            # PRAGMAs) cost more than the few queries of a web request's trip
            # (issue 26's profile: ~12 % of Daphne's CPU). One file, no server: an
            # idle connection holds nothing. One left mid-transaction or after an
            # error is dropped.
            opened = connection.connection is not None
            if opened and (not connection.get_autocommit() or connection.errors_occurred):
                connection.close()
        else:
            connections.close_all()  # back to the pool


async def in_db(fn: Callable[..., T], *args) -> T:
    executor = _executor.get()
    if executor is None:  # outside a run: a pooled thread (its SQLite connection kept)
        return await asyncio.to_thread(_call_and_close, fn, *args)
    call = functools.partial(_call_and_release, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)

"""A run's events handed in memory to whoever follows it in the same process (issue
26): an API request whose run runs in its own web process (in_web.py) reads them
here instead of reading them back from the conversation's Redis Stream, which the
run still writes for the room. Each event is put here when the run announces it, in
the order it announces them, before it goes to Redis.

A tap is opened before its run starts, so no event is missed; the follower takes it
once (a second follower, an idempotent retry, reads the stream); one never taken
goes with its run.
"""

import asyncio

_open: dict[int, asyncio.Queue] = {}
_taken: set[int] = set()


def open_for(run_id: int) -> asyncio.Queue:
    _open[run_id] = asyncio.Queue()
    return _open[run_id]


def of(run_id: int) -> asyncio.Queue | None:
    """The run's own end of its tap, if it has one (taken or not)."""
    return _open.get(run_id)


def take(run_id: int) -> asyncio.Queue | None:
    """The follower's end, once."""
    if run_id in _taken or run_id not in _open:
        return None
    _taken.add(run_id)
    return _open[run_id]


def close(run_id: int) -> None:
    """At the run's end: a follower holding the tap reads on to its end."""
    _open.pop(run_id, None)
    _taken.discard(run_id)

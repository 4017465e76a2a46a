"""Runs started in the web process that took their request (issue 26): an API request
answered by one model alone, with no queue hop in front of its first byte.

In every other way it is a worker's run (`pipeline.execute`), on the web process's
event loop: its rows are saved, and the run marked taken, before its first byte
(runs.start_run); its heartbeat and cancel key are a worker's (runstate.watch), so
a stop reaches it within CANCEL_POLL_S, and the sweeper closes it within
1⅓ × RUN_HEARTBEAT_TTL_S if the process dies; its answers are saved, charged and
traced by the same code. What differs: a web process that stops (a deploy) ends the
runs it holds, and the sweeper closes them in words, where a worker's warm shutdown
lets its runs finish.
"""

import asyncio
import logging

from chat.models import Run

from . import loop, pipeline, tap
from .db import in_db
from .runs import mark_failed

log = logging.getLogger(__name__)

_running: set[asyncio.Task] = set()  # held, so that a run's task is not collected


def start(run_id: int) -> asyncio.Task:
    """Run a run taken at its creation on this event loop; returns its task."""
    running = asyncio.get_running_loop()
    loop.adopt(running)
    tap.open_for(run_id)  # its follower here reads its events from memory (tap.py)
    task = running.create_task(_execute(run_id), name=f"run-{run_id}")
    _running.add(task)
    task.add_done_callback(_running.discard)
    task.add_done_callback(lambda _: tap.close(run_id))
    return task


async def _execute(run_id: int) -> None:
    try:
        await pipeline.execute(run_id, taken=True)
    except Exception as exc:  # as chat.tasks.execute_run: closed in words, never stuck
        log.exception("run %s crashed", run_id)
        detail = f"Internal error: {type(exc).__name__}: {exc}"
        await in_db(mark_failed, run_id, Run.Failure.INTERNAL, detail)

"""A run's life signals in Redis: the cancel request and the worker's heartbeat.

The worker running a run refreshes its heartbeat every few seconds and watches
for a cancel request; the sweeper closes runs whose heartbeat has gone (a worker
killed mid-run), and queues again those whose task a restarted Redis lost, so no
run stays "in progress" or "waiting" forever.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 5.0
CANCEL_POLL_S = 0.25  # a stop reaches every upstream call well within 1 s


def cancel_key(run_id: int) -> str:
    return f"fr:run:{run_id}:cancel"


def _alive_key(run_id: int) -> str:
    return f"fr:run:{run_id}:alive"


def request_cancel(redis_sync, run_id: int) -> None:
    redis_sync.set(cancel_key(run_id), "1", ex=3600)


def is_alive(redis_sync, run_id: int) -> bool:
    return bool(redis_sync.exists(_alive_key(run_id)))


def _requeued_key(run_id: int) -> str:
    return f"fr:run:{run_id}:requeued"


def claim_requeue(redis_sync, run_id: int) -> bool:
    """True once per Redis lifetime (the key goes with a restart): the sweeper
    queues a run whose task a restart lost, but never twice. The claim holds a
    minute until `confirm_requeue`, so a sweeper that dies before it has sent
    the task loses the run for a minute, not for a day."""
    return bool(redis_sync.set(_requeued_key(run_id), "1", nx=True, ex=60))


def confirm_requeue(redis_sync, run_id: int) -> None:
    """The task was sent: keep the claim for the rest of this Redis's life."""
    redis_sync.expire(_requeued_key(run_id), 86400)


def release_requeue(redis_sync, run_id: int) -> None:
    """Give back a claim whose task could not be sent, so the next sweep tries again."""
    redis_sync.delete(_requeued_key(run_id))


async def watch(redis, run_id: int, on_cancel: Callable[[], None]) -> None:
    """Keep the heartbeat and call on_cancel once when a stop is requested. Runs
    until cancelled by the pipeline.

    Redis going away does not end the watch: the run goes on without Redis, and
    the heartbeat is set again as soon as Redis answers (a Redis that restarted
    empty has lost it), so the sweeper never takes a live run for a dead one."""
    loop = asyncio.get_running_loop()
    next_beat = 0.0
    cancelled = False
    unreachable = False
    try:
        while True:
            try:
                if loop.time() >= next_beat:
                    await redis.set(_alive_key(run_id), "1", ex=settings.RUN_HEARTBEAT_TTL_S)
                    beat_every = min(HEARTBEAT_EVERY_S, settings.RUN_HEARTBEAT_TTL_S / 3)
                    next_beat = loop.time() + beat_every
                if not cancelled and await redis.exists(cancel_key(run_id)):
                    cancelled = True
                    on_cancel()  # the heartbeat goes on while the run winds down
                if unreachable:
                    log.warning("run %s: Redis answers again; heartbeat restored", run_id)
                    unreachable = False
            except RedisError as exc:
                if not unreachable:
                    log.warning("run %s: Redis unreachable, heartbeat paused: %s", run_id, exc)
                unreachable, next_beat = True, 0.0
            await asyncio.sleep(CANCEL_POLL_S)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(redis.delete(_alive_key(run_id)))

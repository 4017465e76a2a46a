"""The Celery entry points. Task names are explicit, so work already queued
under them is never lost when modules move."""

import logging
from datetime import timedelta

import redis
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from .engine import loop, pipeline, runstate
from .engine.live import sync_redis
from .engine.runs import EXECUTE_RUN, mark_failed, publish
from .models import Run

log = logging.getLogger(__name__)


@shared_task(name=EXECUTE_RUN)
def execute_run(run_id: int) -> None:
    """One run on its own event loop; the worker's threads pool runs many at once."""
    try:
        loop.run(pipeline.execute(run_id))
    except Exception as exc:
        log.exception("run %s crashed", run_id)
        mark_failed(run_id, Run.Failure.INTERNAL, f"Internal error: {type(exc).__name__}: {exc}")
        raise


@shared_task(name="chat.sweep_abandoned_runs")
def sweep_abandoned_runs() -> int:
    """Close runs whose worker died: started, not finished, and no heartbeat. And
    queue again the runs whose task a restarted Redis lost. Returns how many runs
    were closed."""
    client = sync_redis()
    swept = 0
    try:
        uptime = _redis_uptime(client)
        if uptime is not None:
            _requeue_lost_tasks(client, uptime)
            if uptime < settings.RUN_HEARTBEAT_TTL_S:
                # It may have come back empty, losing the heartbeat of every live
                # run: their workers set it again within the TTL, so until then a
                # missing heartbeat proves nothing.
                log.info("Redis started %d s ago: the sweep waits for heartbeats", uptime)
                return 0
        stale = Run.objects.filter(
            status__in=[s for s in Run.ACTIVE if s != Run.Status.QUEUED],
            started_at__lt=timezone.now() - timedelta(seconds=settings.RUN_HEARTBEAT_TTL_S),
        ).values_list("pk", flat=True)
        for run_id in stale:
            if not runstate.is_alive(client, run_id):
                swept += mark_failed(
                    run_id,
                    Run.Failure.WORKER_LOST,
                    "The worker running this stopped before it finished (it was restarted "
                    "or killed). What had arrived is kept; send the message again to retry.",
                )
    finally:
        client.close()
    if swept:
        log.warning("swept %d abandoned run(s)", swept)
    return swept


def _redis_uptime(client) -> int | None:
    """Seconds since the Redis server started; None when it hides INFO."""
    try:
        return int(client.info("server")["uptime_in_seconds"])
    except (redis.ResponseError, KeyError, ValueError):
        return None


# INFO's uptime_in_seconds is the server's clock in whole seconds now, less the
# whole second it started in: Redis started up to a second either side of
# `now - uptime`. A run queued in the second before a restart was left out by every
# sweep that fell early in its second (and beat's sweeps keep their place in the
# second), so the later bound is taken. A run queued just after the restart, still
# waiting, may then be sent twice, which is harmless: a worker takes it only once.
UPTIME_RESOLUTION = timedelta(seconds=1)


def _requeue_lost_tasks(client, uptime: int) -> None:
    """A run still waiting for a worker that was queued before this Redis started:
    if Redis came back empty, its task is gone, and it would wait for ever. Queue it
    again, once per Redis start (if the task survived, a run is taken only once).
    A task that cannot be sent is tried again by the next sweep."""
    started = timezone.now() - timedelta(seconds=uptime) + UPTIME_RESOLUTION
    waiting = Run.objects.filter(status=Run.Status.QUEUED, created_at__lt=started)
    for run_id in waiting.values_list("pk", flat=True):
        if not runstate.claim_requeue(client, run_id):
            continue
        try:
            publish(run_id)
        except Exception as exc:
            # Kept, the claim would keep every later sweep from sending it.
            runstate.release_requeue(client, run_id)
            log.warning(
                "run %s was queued before Redis started, and queueing it again failed "
                "(%s: %s): the next sweep tries again",
                run_id,
                type(exc).__name__,
                exc,
            )
        else:
            runstate.confirm_requeue(client, run_id)
            log.warning("run %s was queued before Redis started: queued it again", run_id)


@worker_ready.connect
def _sweep_on_start(**kwargs):
    # A restarted worker closes what its predecessor left behind at once.
    sweep_abandoned_runs.delay()

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
from .engine.runs import EXECUTE_RUN, enqueue, mark_failed
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


def _requeue_lost_tasks(client, uptime: int) -> None:
    """A run still waiting for a worker that was queued before this Redis started:
    if Redis came back empty, its task is gone, and it would wait for ever. Queue it
    again, once per Redis start (if the task survived, a run is taken only once)."""
    started = timezone.now() - timedelta(seconds=uptime)
    waiting = Run.objects.filter(status=Run.Status.QUEUED, created_at__lt=started)
    for run_id in waiting.values_list("pk", flat=True):
        if runstate.claim_requeue(client, run_id):
            log.warning("run %s was queued before Redis started: queueing it again", run_id)
            enqueue(run_id)


@worker_ready.connect
def _sweep_on_start(**kwargs):
    # A restarted worker closes what its predecessor left behind at once.
    sweep_abandoned_runs.delay()

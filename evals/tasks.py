"""The Celery entry points of the evaluation harness."""

import logging
import threading
from datetime import timedelta

import redis
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from chat.engine import loop
from chat.engine.live import sync_redis

from . import control, harness
from .models import Evaluation

log = logging.getLogger(__name__)


@shared_task(name=control.RUN_EVALUATION)
def run_evaluation(evaluation_id: int) -> None:
    """The whole evaluation on the worker's shared event loop; one worker thread
    waits on it, the runs themselves are coroutines like a chat's."""
    try:
        loop.run(harness.evaluate(evaluation_id))
    except Exception as exc:
        log.exception("evaluation %s crashed", evaluation_id)
        control.mark_failed(
            evaluation_id,
            f"The harness stopped on an internal error ({type(exc).__name__}: {exc}). "
            "What was finished is kept; resume to do the rest.",
        )


@shared_task(name="evals.resume_interrupted")
def resume_interrupted() -> int:
    """Queue again every evaluation whose runner died (its lease lapsed): a worker
    killed or restarted mid-evaluation loses only the pairs in flight."""
    client = sync_redis()
    resumed = 0
    try:
        cutoff = timezone.now() - timedelta(seconds=settings.EVAL_LEASE_TTL_S)
        for evaluation in Evaluation.objects.filter(
            status__in=[Evaluation.Status.RUNNING, Evaluation.Status.STOPPING],
            started_at__lt=cutoff,
        ):
            if client.exists(harness.lease_key(evaluation.pk)):
                continue
            if evaluation.status == Evaluation.Status.STOPPING:
                Evaluation.objects.filter(pk=evaluation.pk).update(
                    status=Evaluation.Status.STOPPED, detail="Stopped; resume to finish."
                )
                continue
            log.warning("evaluation %s lost its runner; queueing it again", evaluation.pk)
            control.enqueue(evaluation.pk)
            resumed += 1
    except redis.RedisError as exc:
        log.warning("could not check evaluations' leases: %s", exc)
    finally:
        client.close()
    return resumed


@worker_ready.connect
def _resume_on_start(**kwargs):
    # After the lease of a killed predecessor has lapsed. A timer here, not a task
    # countdown: a task with an ETA waits in the worker unacknowledged, and a worker
    # holding one when Redis restarts dies (kombu's restore of unacked messages
    # fails with an AttributeError, not a connection error: tests/test_faults.py).
    timer = threading.Timer(settings.EVAL_LEASE_TTL_S + 1, _queue_resume)
    timer.daemon = True
    timer.start()


def _queue_resume() -> None:
    try:
        resume_interrupted.delay()
    except Exception as exc:  # beat queues it again within 30 s
        log.warning("could not queue the resume of interrupted evaluations: %s", exc)

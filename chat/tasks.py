import logging
from datetime import timedelta

import redis
from asgiref.sync import async_to_sync
from celery import shared_task
from celery.signals import worker_ready
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from . import pipeline, runstate, streams, worker_loop
from .models import Answer, Run

log = logging.getLogger(__name__)


@shared_task(name="chat.execute_run")
def execute_run(run_id: int) -> None:
    """One run on its own event loop; the worker's threads pool runs many at once."""
    try:
        worker_loop.run(pipeline.execute(run_id))
    except Exception as exc:
        log.exception("run %s crashed", run_id)
        mark_failed(run_id, Run.Failure.INTERNAL, f"Internal error: {type(exc).__name__}: {exc}")
        raise


def mark_failed(run_id: int, reason: str, detail: str) -> bool:
    """Close a run that cannot go on, keeping whatever text its answers have, and
    tell the room. Returns whether this call closed it."""
    live = Answer.objects.filter(
        run_id=run_id, status__in=[Answer.Status.QUEUED, Answer.Status.STREAMING]
    )
    _keep_live_text(list(live))
    live.update(status=Answer.Status.FAILED, error=detail)
    closed = Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).update(
        status=Run.Status.FAILED,
        failure_reason=reason,
        failure_detail=detail,
        finished_at=timezone.now(),
    )
    if closed:
        run = Run.objects.select_related("message__conversation").get(pk=run_id)
        event = {
            "type": "run.done",
            "run": run_id,
            "status": run.status,
            "failure_reason": reason,
            "failure_detail": detail,
        }
        try:
            async_to_sync(streams.announce)(
                get_channel_layer(), run.message.conversation.group_name, event
            )
        except Exception:
            log.warning("could not announce the failure of run %s", run_id)
    return bool(closed)


def _keep_live_text(answers: list[Answer]) -> None:
    """Text that streamed before a crash lives in Redis: save it with the answer."""
    if not answers:
        return
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    try:
        for answer in answers:
            text = client.get(streams.text_key(answer.pk))
            if text:
                answer.text = text.decode("utf-8", "replace")
                answer.save(update_fields=["text"])
    except redis.RedisError:
        log.warning("could not recover live text of %d answers", len(answers))
    finally:
        client.close()


@shared_task(name="chat.sweep_abandoned_runs")
def sweep_abandoned_runs() -> int:
    """Close runs whose worker died: started, not finished, and no heartbeat."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    swept = 0
    try:
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


@worker_ready.connect
def _sweep_on_start(**kwargs):
    # A restarted worker closes what its predecessor left behind at once.
    sweep_abandoned_runs.delay()

import asyncio
import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.utils import timezone

from . import pipeline, streams
from .models import Answer, Run

log = logging.getLogger(__name__)


@shared_task(name="chat.execute_run")
def execute_run(run_id: int) -> None:
    """One run on its own event loop; the worker's threads pool runs many at once."""
    try:
        asyncio.run(pipeline.execute(run_id))
    except Exception as exc:
        log.exception("run %s crashed", run_id)
        mark_failed(run_id, f"Internal error while running: {type(exc).__name__}: {exc}")
        raise


def mark_failed(run_id: int, reason: str) -> None:
    """Close a run that cannot go on, keeping whatever text its answers have,
    and tell the room (a browser that misses this catches up from a snapshot)."""
    closed = Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).update(
        status=Run.Status.FAILED, failure_reason=reason, finished_at=timezone.now()
    )
    Answer.objects.filter(
        run_id=run_id, status__in=[Answer.Status.QUEUED, Answer.Status.STREAMING]
    ).update(status=Answer.Status.FAILED, error=reason)
    if not closed:
        return
    run = Run.objects.select_related("message__conversation").get(pk=run_id)
    event = {"type": "run.done", "run": run_id, "status": run.status, "failure_reason": reason}
    try:
        async_to_sync(streams.announce)(
            get_channel_layer(), run.message.conversation.group_name, event
        )
    except Exception:
        log.warning("could not announce the failure of run %s", run_id)

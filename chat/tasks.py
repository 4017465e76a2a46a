import asyncio
import logging

from celery import shared_task
from django.utils import timezone

from . import pipeline
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
    """Close a run that cannot go on, keeping whatever text its answers have."""
    Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).update(
        status=Run.Status.FAILED, failure_reason=reason, finished_at=timezone.now()
    )
    Answer.objects.filter(
        run_id=run_id, status__in=[Answer.Status.QUEUED, Answer.Status.STREAMING]
    ).update(status=Answer.Status.FAILED, error=reason)

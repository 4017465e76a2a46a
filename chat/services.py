"""Starting runs: the one place a user message becomes queued work."""

import logging

from django.db import transaction

from .models import Answer, Conversation, Message, Run

log = logging.getLogger(__name__)


def start_run(conversation: Conversation, content: str) -> Message:
    """Save the message and its run, and enqueue the run once the rows are committed."""
    model = conversation.model
    with transaction.atomic():
        message = Message.objects.create(conversation=conversation, content=content)
        if not conversation.title:
            conversation.title = _title_from(content)
        conversation.save(update_fields=["title", "updated_at"])
        run = Run.objects.create(message=message)
        Answer.objects.create(
            run=run,
            catalog_model=model,
            model_key=model.model_id if model else "",
            model_name=model.display_name if model else "(model removed)",
            provider_name=model.provider.name if model else "",
        )
        transaction.on_commit(lambda: enqueue(run.pk))
    return message


def enqueue(run_id: int) -> None:
    from .tasks import execute_run, mark_failed

    try:
        # Few, quick retries: a person is waiting for the page.
        execute_run.apply_async(
            args=[run_id],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:
        log.error("could not enqueue run %s: %s", run_id, exc)
        mark_failed(
            run_id,
            "The task queue is unreachable, so nobody could pick this message up "
            f"({type(exc).__name__}). Check that Redis is running (see /healthz).",
        )


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"

"""Starting and stopping runs: the one place a user message becomes queued work.

Every entry point — the chatroom, the API, the MCP server and the `fusion`
command — starts a conversation through `start_conversation` and a later turn
through `start_run`, so a run's rows look the same whoever asked, and every one
meets the same limits (a refusal raises admission.LimitReached, saving nothing).
"""

import logging

import redis
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat.models import Answer, Conversation, Message, Run
from panels.models import CatalogModel, Panel, solo_snapshot

from . import admission, events, fusion_tool, live, runstate

log = logging.getLogger(__name__)


def run_config(conversation: Conversation) -> dict:
    """Freeze what answers in this conversation now: later edits never change this run."""
    if conversation.panel is not None:
        return conversation.panel.snapshot()
    if conversation.model is not None:
        config = solo_snapshot(conversation.model)
        # "May consult the panel"; a model since marked as unable to call tools answers alone.
        if conversation.consult_panel is not None and conversation.model.supports_tools:
            config["server_tools"] = fusion_tool.consult_config(conversation.consult_panel)
        return config
    if conversation.adhoc_config:
        return dict(conversation.adhoc_config)
    return {"seats": []}


def start_conversation(
    owner,
    answerer: Panel | CatalogModel | dict,
    question: str,
    via: str,
    extra: dict | None = None,
    consult_panel: Panel | None = None,
    here: bool = False,
) -> Message:
    """A new conversation answered by a panel or one model, with its first run queued.
    With one model, `consult_panel` is the panel it may consult (the chatroom's "May
    consult the panel": the caller has checked the model can call tools and the
    owner may use the panel).
    `answerer` may also be a prepared run configuration (an ad-hoc panel built for
    one API request, panels.recipes.snapshot): the run keeps it, and the conversation names
    no panel. `via` says which door the question came through (conversation, api, mcp, cli).
    `here`: see start_run."""
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=owner,
            panel=answerer if isinstance(answerer, Panel) else None,
            model=answerer if isinstance(answerer, CatalogModel) else None,
            adhoc_config=answerer if isinstance(answerer, dict) else None,
            consult_panel=consult_panel if isinstance(answerer, CatalogModel) else None,
        )
        if isinstance(answerer, Panel):
            count_use(answerer)
        return start_run(conversation, question, {"via": via, **(extra or {})}, here=here)


def count_use(panel: Panel) -> None:
    """One more conversation with this panel (the gallery sorts by it)."""
    Panel.objects.filter(pk=panel.pk).update(use_count=F("use_count") + 1)


# create_run's default parent: the last message of the conversation's current branch.
AFTER_BRANCH = object()


def start_run(
    conversation: Conversation,
    content: str,
    extra: dict | None = None,
    parent: Message | None | object = AFTER_BRANCH,
    here: bool = False,
) -> Message:
    """Save the message, its run and the seats' answers, and enqueue the run once
    the rows are committed, so a worker never looks for rows not there yet.
    With `here`, a run that may run in the caller's process (runs_here) is
    marked taken in the same transaction instead, and not enqueued: the caller
    starts it (in_web.start) once this returns. Taken, it has a start time from its
    first moment, so the sweeper closes it if the process dies before it beats."""
    with transaction.atomic():
        message = create_run(conversation, content, extra, parent)
        run = message.run
        if run.status == Run.Status.QUEUED and here and runs_here(run.config):
            run.status, run.started_at = Run.Status.PANEL, timezone.now()
            run.save(update_fields=["status", "started_at"])
        elif run.status == Run.Status.QUEUED:
            transaction.on_commit(lambda: enqueue(run.pk))
    return message


def runs_here(config: dict) -> bool:
    """Whether a run may skip the queue and run in the process that started it
    (chat/engine/in_web.py): one model answering alone, with no server tools that
    could convene a panel or search (long and heavy: a worker's)."""
    return (
        settings.ONE_SEAT_RUNS_IN_WEB
        and len(config.get("seats") or []) == 1
        and not config.get("judge")
        and not config.get("server_tools")
        and (config.get("strategy") or {}).get("name", "fusion") == "fusion"
    )


def taken_here(run: Run) -> bool:
    """Whether start_run marked the run taken for the caller's process to run."""
    return run.status == Run.Status.PANEL and run.started_at is not None


def _parent_id(conversation: Conversation, parent: Message | None | object) -> int | None:
    """The message a new turn follows: the end of the current branch, or the one given."""
    if parent is AFTER_BRANCH:
        branch = conversation.branch_ids()
        return branch[-1] if branch else None
    return parent.pk if isinstance(parent, Message) else None


def create_run(
    conversation: Conversation,
    content: str,
    extra: dict | None = None,
    parent: Message | None | object = AFTER_BRANCH,
) -> Message:
    """The rows of a new turn: message, run (with the frozen configuration), and one
    queued answer per seat. Nothing is enqueued. The user's limits are checked
    first (admission.py): a refused run raises LimitReached and saves nothing.

    The message follows `parent` (by default the end of the current branch; an edit
    or a regeneration passes the parent of the turn it makes a new version of, None
    for a first turn), and becomes the end of the current branch."""
    parent_id = _parent_id(conversation, parent)
    config = run_config(conversation) | (extra or {})
    owner = conversation.owner
    with transaction.atomic():
        # One start at a time per user, so two at once cannot both pass the
        # runs-at-once check, nor both reserve the same money (PostgreSQL; SQLite
        # begins every transaction IMMEDIATE, which serialises them anyway).
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        admission.reachable(owner, config)
        budget = admission.admit(
            owner,
            config,
            content,
            via=config.get("via", "conversation"),
            api_key_id=config.get("api_key"),
            parent_id=parent_id,
        )
        if budget is not None:
            config["budget"] = budget
        message = Message.objects.create(
            conversation=conversation, content=content, parent_id=parent_id
        )
        if not conversation.title:
            conversation.title = _title_from(content)
        conversation.current_leaf = message
        conversation.save(update_fields=["title", "current_leaf", "updated_at"])
        run = Run.objects.create(message=message, panel_id=conversation.panel_id, config=config)
        for position, seat in enumerate(config["seats"]):
            ref = seat.get("model") or {}
            Answer.objects.create(
                run=run,
                role=Answer.Role.SEAT,
                position=position,
                catalog_model_id=ref.get("catalog_id"),
                model_key=ref.get("model_id", ""),
                model_name=ref.get("name", "(model removed)"),
                provider_name=ref.get("provider", ""),
            )
        if not config["seats"]:
            run.status, run.failure_reason = Run.Status.FAILED, Run.Failure.NO_MODEL
            run.failure_detail = (
                "The model or panel of this conversation was removed; start a new conversation."
            )
            run.save()
    return message


def stop_run(run: Run) -> bool:
    """Ask the worker running `run` to stop it; a run still in the queue is closed
    here and then skipped by the worker. Returns whether there was anything to stop."""
    if not run.is_active:
        return False
    closed = Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.CANCELLED,
        failure_reason=Run.Failure.CANCELLED,
        failure_detail="Stopped before it started.",
        finished_at=timezone.now(),
    )
    if closed:
        Answer.objects.filter(run=run).update(status=Answer.Status.CANCELLED)
        return True
    client = live.sync_redis()
    try:
        runstate.request_cancel(client, run.pk)
    except redis.RedisError as exc:
        raise StopUnavailable(
            "The stop could not reach the worker: Redis is not answering (see /healthz)."
        ) from exc
    finally:
        client.close()
    return True


class StopUnavailable(Exception):
    pass


EXECUTE_RUN = "chat.execute_run"  # chat/tasks.py; sent by name, so the engine never imports it


def publish(run_id: int) -> None:
    """Send the run's task to the workers; raises when the broker cannot take it.
    A broken connection (Redis restarted) is dropped and opened again by the retries."""
    # Few, quick retries: a person is waiting for the page.
    current_app.send_task(
        EXECUTE_RUN,
        args=[run_id],
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )


def enqueue(run_id: int) -> None:
    """Publish the run's task, or close the run in words when the queue is unreachable."""
    try:
        publish(run_id)
    except Exception as exc:
        log.error("could not enqueue run %s: %s", run_id, exc)
        mark_failed(
            run_id,
            Run.Failure.QUEUE_UNREACHABLE,
            "The task queue is unreachable, so nobody could pick this message up "
            f"({type(exc).__name__}). Check that Redis is running (see /healthz).",
        )


def mark_failed(run_id: int, reason: str, detail: str) -> bool:
    """Close a run that cannot go on, keeping whatever text its answers have, and
    tell the conversation. Returns whether this call closed it."""
    live_answers = Answer.objects.filter(
        run_id=run_id, status__in=[Answer.Status.QUEUED, Answer.Status.STREAMING]
    )
    _keep_live_text(list(live_answers))
    live_answers.update(status=Answer.Status.FAILED, error=detail)
    closed = Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).update(
        status=Run.Status.FAILED,
        failure_reason=reason,
        failure_detail=detail,
        finished_at=timezone.now(),
    )
    if closed:
        run = Run.objects.select_related("message__conversation").get(pk=run_id)
        event = events.run_closed(run_id, run.status, reason, detail)
        client = live.sync_redis()
        try:
            live.announce_sync(client, run.message.conversation.events_key, event)
        except redis.RedisError:
            log.warning("could not announce the failure of run %s", run_id)
        finally:
            client.close()
    return bool(closed)


def _keep_live_text(answers: list[Answer]) -> None:
    """Text that streamed before a crash lives in Redis: save it with the answer."""
    if not answers:
        return
    client = live.sync_redis()
    try:
        for answer in answers:
            text = client.get(live.text_key(answer.pk))
            if isinstance(text, bytes) and text:
                answer.text = text.decode("utf-8", "replace")
                answer.save(update_fields=["text"])
    except redis.RedisError:
        log.warning("could not recover live text of %d answers", len(answers))
    finally:
        client.close()


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"

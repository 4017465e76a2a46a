"""Starting, stopping and resuming evaluations: the one place each happens, for the
page and the `fusion_eval` command alike."""

import logging

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from panels.models import CatalogModel, solo_snapshot

from .harness import choose_items, is_interrupted
from .models import Dataset, Evaluation, System
from .systems import Spec

log = logging.getLogger(__name__)

RUN_EVALUATION = "evals.run_evaluation"  # evals/tasks.py; sent by name


class Refused(ValueError):
    """Why an evaluation cannot start, in words a person can act on."""


def create(
    owner,
    dataset: Dataset,
    specs: list[Spec],
    *,
    item_limit: int | None = None,
    skip_keys: frozenset[str] = frozenset(),
    grader: CatalogModel | None = None,
    name: str = "",
    enqueue_it: bool = True,
) -> Evaluation:
    """A new evaluation, queued for a worker (or, with enqueue_it=False, for the
    caller to run: the command). Refused, with nothing saved, past a limit."""
    if not specs:
        raise Refused("Choose at least one system to evaluate.")
    if len(specs) > settings.EVAL_MAX_SYSTEMS:
        raise Refused(f"At most {settings.EVAL_MAX_SYSTEMS} systems per evaluation.")
    if dataset.kind == Dataset.Kind.RUBRIC and grader is None:
        raise Refused("A rubric dataset needs a grader model, which the systems never see.")
    if item_limit is not None and item_limit < 1:
        raise Refused("The number of items must be at least 1.")
    item_ids = choose_items(dataset, item_limit, skip_keys)
    if not item_ids:
        raise Refused("No item is left to evaluate: every item of the dataset is skipped.")
    if len(item_ids) * len(specs) > settings.EVAL_MAX_PAIRS:
        raise Refused(
            f"{len(item_ids)} items × {len(specs)} systems is {len(item_ids) * len(specs):,} "
            f"runs; the limit is {settings.EVAL_MAX_PAIRS:,}. Evaluate fewer items or systems."
        )
    with transaction.atomic():
        check_running(owner)
        evaluation = Evaluation.objects.create(
            owner=owner,
            dataset=dataset,
            name=name or f"{dataset.name}: {len(specs)} systems",
            item_limit=item_limit,
            item_ids=item_ids,
            total=len(item_ids) * len(specs),
            grader=grader,
            grader_config=solo_snapshot(grader) if grader else None,
        )
        System.objects.bulk_create(
            System(
                evaluation=evaluation,
                position=position,
                label=spec.label[:160],
                kind=spec.kind,
                config=spec.config,
                panel=spec.panel,
                panel_version=spec.panel.version if spec.panel else None,
            )
            for position, spec in enumerate(specs)
        )
        if enqueue_it:
            transaction.on_commit(lambda: enqueue(evaluation.pk))
    return evaluation


def check_running(owner, besides: Evaluation | None = None) -> None:
    """At most EVAL_MAX_RUNNING at once per user. The owner's row is locked first, so
    two requests at once cannot both pass (PostgreSQL; SQLite writes one at a time).
    Call it inside the transaction that then saves the evaluation's new status."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    active = Evaluation.objects.filter(owner=owner, status__in=Evaluation.ACTIVE)
    if besides is not None:
        active = active.exclude(pk=besides.pk)
    if active.count() >= settings.EVAL_MAX_RUNNING:
        raise Refused(
            f"You already have {active.count()} evaluation(s) running (the limit is "
            f"{settings.EVAL_MAX_RUNNING}); stop one or wait for it to finish."
        )


def enqueue(evaluation_id: int) -> None:
    try:
        current_app.send_task(
            RUN_EVALUATION, args=[evaluation_id], queue=settings.EVAL_QUEUE or None, retry=True
        )
    except Exception as exc:
        log.error("could not enqueue evaluation %s: %s", evaluation_id, exc)
        Evaluation.objects.filter(pk=evaluation_id).update(
            status=Evaluation.Status.FAILED,
            detail="The task queue is unreachable (is Redis running? see /healthz); "
            "resume when it is back.",
        )


def stop(evaluation: Evaluation) -> bool:
    """Ask it to stop: a queued one stops at once, a running one after the runs in
    flight are cancelled (its runner notices within seconds)."""
    if Evaluation.objects.filter(pk=evaluation.pk, status=Evaluation.Status.QUEUED).update(
        status=Evaluation.Status.STOPPED, detail="Stopped before it started; resume to run it."
    ):
        return True
    return bool(
        Evaluation.objects.filter(pk=evaluation.pk, status=Evaluation.Status.RUNNING).update(
            status=Evaluation.Status.STOPPING
        )
    )


def resume(evaluation: Evaluation, *, enqueue_it: bool = True) -> None:
    """Queue what is left of a stopped, failed or interrupted evaluation (for a worker
    after the commit, or, with enqueue_it=False, for the caller to run: the command)."""
    resumable = (Evaluation.Status.STOPPED, Evaluation.Status.FAILED)
    if evaluation.status not in resumable and not is_interrupted(evaluation):
        raise Refused(
            f"This evaluation is {evaluation.status}; only a stopped, failed or interrupted "
            "one resumes."
        )
    with transaction.atomic():
        check_running(evaluation.owner, besides=evaluation)
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=Evaluation.Status.QUEUED, detail=""
        )
        if enqueue_it:
            transaction.on_commit(lambda: enqueue(evaluation.pk))


def mark_failed(evaluation_id: int, detail: str) -> None:
    Evaluation.objects.filter(pk=evaluation_id, status__in=Evaluation.ACTIVE).update(
        status=Evaluation.Status.FAILED, detail=detail, finished_at=timezone.now()
    )

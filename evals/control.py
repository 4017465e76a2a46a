"""Starting, stopping and resuming evaluations: the one place each happens, for the
page and the `fusion_eval` command alike."""

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from panels.models import CatalogModel, solo_snapshot

from .harness import is_interrupted, items_of
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
    grader: CatalogModel | None = None,
    name: str = "",
) -> Evaluation:
    if not specs:
        raise Refused("Choose at least one system to evaluate.")
    if len(specs) > settings.EVAL_MAX_SYSTEMS:
        raise Refused(f"At most {settings.EVAL_MAX_SYSTEMS} systems per evaluation.")
    if dataset.kind == Dataset.Kind.RUBRIC and grader is None:
        raise Refused("A rubric dataset needs a grader model, which the systems never see.")
    if item_limit is not None and item_limit < 1:
        raise Refused("The number of items must be at least 1.")
    items = min(dataset.item_count, item_limit or dataset.item_count)
    if items * len(specs) > settings.EVAL_MAX_PAIRS:
        raise Refused(
            f"{items} items × {len(specs)} systems is {items * len(specs):,} runs; the limit "
            f"is {settings.EVAL_MAX_PAIRS:,}. Evaluate fewer items or systems."
        )
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            owner=owner,
            dataset=dataset,
            name=name or f"{dataset.name}: {len(specs)} systems",
            item_limit=item_limit,
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
        evaluation.total = len(items_of(evaluation)) * len(specs)
        evaluation.save(update_fields=["total"])
    return evaluation


def running_for(owner) -> int:
    return Evaluation.objects.filter(owner=owner, status__in=Evaluation.ACTIVE).count()


def start(evaluation: Evaluation) -> None:
    """Queue it for a worker (after the rows are committed)."""
    others = running_for(evaluation.owner) - (1 if evaluation.is_active else 0)
    if others >= settings.EVAL_MAX_RUNNING:
        raise Refused(
            f"You already have {others} evaluation(s) running (the limit is "
            f"{settings.EVAL_MAX_RUNNING}); stop one or wait for it to finish."
        )
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.QUEUED, detail="")
    transaction.on_commit(lambda: enqueue(evaluation.pk))


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


def resume(evaluation: Evaluation) -> None:
    """Queue what is left of a stopped, failed or interrupted evaluation."""
    resumable = (Evaluation.Status.STOPPED, Evaluation.Status.FAILED)
    if evaluation.status not in resumable and not is_interrupted(evaluation):
        raise Refused(
            f"This evaluation is {evaluation.status}; only a stopped, failed or interrupted "
            "one resumes."
        )
    start(evaluation)


def mark_failed(evaluation_id: int, detail: str) -> None:
    Evaluation.objects.filter(pk=evaluation_id, status__in=Evaluation.ACTIVE).update(
        status=Evaluation.Status.FAILED, detail=detail, finished_at=timezone.now()
    )

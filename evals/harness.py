"""Running an evaluation: every (system, item) pair not yet done, a few at a time.

Each pair is one run through the same pipeline as a chat message (chat/engine), in a
hidden conversation of the evaluation's owner; its final answer is graded and one
Result row saved. Only finished pairs have rows, so a stop, a crash or a restarted
worker loses at most the pairs in flight, and the next start does the rest.

One process at a time runs an evaluation: a Redis key taken with NX is its lease,
refreshed while it works (the heartbeat). When the key lapses the beat's sweep
(evals/tasks.py) queues the evaluation again. Concurrency is bounded by
EVAL_CONCURRENCY per evaluation and EVAL_MAX_RUNNING per user, so evaluations
never take the chat's place.

Long on purpose: the lease, the heartbeat, resuming and the loop over pairs are one
state machine, whose invariants would otherwise span files.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from chat.engine import live, pipeline, runstate
from chat.engine.admission import LimitReached
from chat.engine.db import database_thread, in_db
from chat.engine.runs import create_run
from chat.models import Answer, Conversation, Run

from . import grading
from .models import DatasetItem, Evaluation, Result, System

log = logging.getLogger(__name__)


def lease_key(evaluation_id: int) -> str:
    return f"fr:eval:{evaluation_id}:lease"


# Renew the lease only while it is still ours (a lapsed lease may be someone else's).
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) else return nil end"  # noqa: E501
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


class _Cancelled(Exception):
    """A run of the evaluation was cancelled by its stop: no result, done on resume."""


@dataclass(frozen=True)
class Progress:
    status: str
    done: int
    errors: int
    total: int
    eta_s: float | None
    detail: str = ""

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "done": self.done,
            "errors": self.errors,
            "total": self.total,
            "percent": self.percent,
            "eta_s": None if self.eta_s is None else round(self.eta_s),
            "detail": self.detail,
        }


INTERRUPTED = "interrupted"


def is_interrupted(evaluation: Evaluation) -> bool:
    """Marked running, but nobody holds its lease: its process died. (Unknown when
    Redis does not answer: then it is not called interrupted.)"""
    if evaluation.status not in (Evaluation.Status.RUNNING, Evaluation.Status.STOPPING):
        return False
    client = live.sync_redis()
    try:
        return not client.exists(lease_key(evaluation.pk))
    except Exception:
        return False
    finally:
        client.close()


def progress_of(evaluation: Evaluation) -> Progress:
    """Where it stands, as the page and the sweep see it: a running evaluation whose
    runner died is called interrupted."""
    if is_interrupted(evaluation):
        detail = (
            "Its runner stopped before it finished (a worker restart?). A worker resumes it "
            "within a minute; or resume it now. Finished results are kept."
        )
        return replace(_progress(evaluation, None), status=INTERRUPTED, eta_s=None, detail=detail)
    return _progress(evaluation, None)


def _progress(evaluation: Evaluation, busy_s: float | None) -> Progress:
    """The counts and the ETA, from the time spent so far over all its starts (the
    runner passes its own, fresher than the row's)."""
    results = Result.objects.filter(evaluation=evaluation)
    done = results.count()
    errors = results.exclude(status=Result.Status.GRADED).count()
    spent = evaluation.busy_s if busy_s is None else busy_s
    eta = None
    if done and evaluation.total > done and spent > 0:
        eta = spent / done * (evaluation.total - done)
    return Progress(evaluation.status, done, errors, evaluation.total, eta, evaluation.detail)


def spread(items: list, count: int | None) -> list:
    """`count` items spread evenly over the list (every category of a dataset
    written category by category is in the sample), or all of them."""
    if not count or count >= len(items):
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


def choose_items(dataset, limit: int | None, skip_keys: frozenset[str] = frozenset()) -> list[int]:
    """N items spread evenly over the dataset, leaving out the keys skipped (the items
    an earlier, partial measurement already holds, to complete it to the whole set)."""
    items = DatasetItem.objects.filter(dataset=dataset).exclude(key__in=skip_keys)
    items = items.order_by("position")
    return [item.pk for item in spread(list(items), limit)]


def items_of(evaluation: Evaluation) -> list[DatasetItem]:
    """The evaluation's items, in dataset order: the ones frozen at its creation."""
    items = DatasetItem.objects.filter(dataset=evaluation.dataset, pk__in=evaluation.item_ids)
    return list(items.order_by("position"))


def _pending(evaluation: Evaluation) -> list[tuple[System, DatasetItem]]:
    """What has no result yet, item by item (all systems of an item together, so a
    stopped evaluation's results stay paired)."""
    systems = list(evaluation.systems.order_by("position"))
    done = set(Result.objects.filter(evaluation=evaluation).values_list("system_id", "item_id"))
    return [
        (system, item)
        for item in items_of(evaluation)
        for system in systems
        if (system.pk, item.pk) not in done
    ]


def _claim(evaluation_id: int, lease: str) -> Evaluation | None:
    """Take the evaluation when it is queued (or was running in a process that died,
    whose lease has lapsed: the caller holds the lease now)."""
    with transaction.atomic():
        taken = Evaluation.objects.filter(
            pk=evaluation_id, status__in=[Evaluation.Status.QUEUED, Evaluation.Status.RUNNING]
        ).update(status=Evaluation.Status.RUNNING, detail="")
        if not taken:
            return None
        evaluation = Evaluation.objects.select_related("dataset", "owner", "grader").get(
            pk=evaluation_id
        )
        evaluation.attempts += 1
        evaluation.started_at = evaluation.started_at or timezone.now()
        evaluation.save(update_fields=["attempts", "started_at"])
    return evaluation


def _new_run(evaluation: Evaluation, config: dict, question: str) -> int:
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=evaluation.owner, hidden=True)
        message = create_run(
            conversation, question, config | {"via": "eval", "evaluation": evaluation.pk}
        )
    return message.run.pk


def _outcome(run_id: int) -> tuple[Run, str]:
    run = Run.objects.get(pk=run_id)
    final = run.final_answer
    return run, (final.text if final is not None and final.status == Answer.Status.DONE else "")


def _usage(run: Run) -> dict:
    sums = run.answers.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    latency = None
    if run.started_at and run.finished_at:
        latency = int((run.finished_at - run.started_at).total_seconds() * 1000)
    return {
        "run": run,
        "input_tokens": sums["i"],
        "output_tokens": sums["o"],
        "cost_usd": run.cost_usd,
        "latency_ms": latency,
    }


def _save(evaluation: Evaluation, system: System, item: DatasetItem, fields: dict) -> None:
    try:
        Result.objects.create(evaluation=evaluation, system=system, item=item, **fields)
    except IntegrityError:  # saved already (a resumed start overlapped): keep the first
        log.info("result of %s on %s exists", system.pk, item.pk)


def _finish(evaluation_id: int, stopped: bool, busy_s: float, why: str = "") -> str:
    evaluation = Evaluation.objects.get(pk=evaluation_id)
    evaluation.busy_s = busy_s
    left = len(_pending(evaluation))
    if left == 0:
        evaluation.status, evaluation.detail = Evaluation.Status.DONE, ""
        evaluation.finished_at = timezone.now()
    elif stopped:
        evaluation.status = Evaluation.Status.STOPPED
        evaluation.detail = f"Stopped with {left} of {evaluation.total} left; resume to finish."
        if why:
            evaluation.detail = f"{why} {evaluation.detail}"
    else:  # its lease was lost: another start will take over
        evaluation.detail = f"Interrupted with {left} of {evaluation.total} left."
    evaluation.save(update_fields=["status", "detail", "finished_at", "busy_s"])
    return evaluation.status


class _Runner:
    def __init__(self, evaluation: Evaluation, redis, on_progress):
        self.evaluation = evaluation
        self.redis = redis
        self.on_progress = on_progress
        self.stopping = False
        self.lost = False
        self.in_flight: set[int] = set()
        self.started = time.monotonic()
        self.refused = ""  # why the owner's limits stopped it (their budget, say)

    async def ask_grader(self, question: str) -> str:
        """A rubric's grader, asked through the pipeline like any system."""
        config = self.evaluation.grader_config
        if not config:
            raise grading.GradingError("This evaluation has no grader model.")
        run, reply = await self._run(config, question)
        if self.stopping and run.status == Run.Status.CANCELLED:
            raise _Cancelled
        if not reply:
            raise grading.GradingError(f"The grader failed: {run.failure_detail or run.status}")
        return reply

    async def _run(self, config: dict, question: str) -> tuple[Run, str]:
        try:
            run_id = await in_db(_new_run, self.evaluation, config, question)
        except LimitReached as refused:
            # An evaluation pays like any run: out of budget, it stops, resumable.
            self.stopping, self.refused = True, refused.message
            raise _Cancelled from None
        self.in_flight.add(run_id)
        try:
            await pipeline.execute(run_id)
        finally:
            self.in_flight.discard(run_id)
        return await in_db(_outcome, run_id)

    async def one(self, system: System, item: DatasetItem) -> None:
        """Ask, grade, save one row. An error is saved as an error, never as wrong."""
        kind = self.evaluation.dataset.kind
        try:
            run, reply = await self._run(system.config, grading.question_for(kind, item.data))
        except _Cancelled:
            return
        if self.stopping and run.status == Run.Status.CANCELLED:
            return  # not a result: the pair is done again on resume
        fields = await in_db(_usage, run)
        if not reply:
            why = run.failure_detail or f"The run ended {run.status} without a final answer."
            fields |= {"status": Result.Status.ERROR, "error": why}
        else:
            try:
                grade = await grading.grade(kind, item.data, reply, self.ask_grader)
            except _Cancelled:
                return
            except grading.GradingError as exc:
                fields |= {"status": Result.Status.GRADE_ERROR, "answer": reply, "error": str(exc)}
            else:
                fields |= {
                    "status": Result.Status.GRADED,
                    "answer": reply,
                    "correct": grade.correct,
                    "score": grade.score,
                    "grade": grade.detail,
                }
        await in_db(_save, self.evaluation, system, item, fields)

    async def work(self, queue: asyncio.Queue) -> None:
        while not self.stopping:
            try:
                system, item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.one(system, item)
            if self.on_progress:
                progress = await in_db(_progress, self.evaluation, self.busy_s())
                self.on_progress(progress)

    def busy_s(self) -> float:
        return self.evaluation.busy_s + time.monotonic() - self.started

    async def heartbeat(self, lease: str) -> None:
        """Hold the lease and record the time spent; notice a stop asked from the page
        or the command. A lease found lost (Redis was down longer than its TTL) stops
        this runner: another may hold the evaluation now, and two must never run it."""
        ttl = settings.EVAL_LEASE_TTL_S
        while not self.stopping:
            await asyncio.sleep(min(2.0, ttl / 3))
            try:
                held = await self.redis.eval(RENEW, 1, lease_key(self.evaluation.pk), lease, ttl)
                status = await in_db(_beat, self.evaluation.pk, self.busy_s())
            except Exception as exc:  # a blip: try again at the next beat
                log.warning("evaluation %s heartbeat failed: %r", self.evaluation.pk, exc)
                continue
            if held is None:
                log.warning("evaluation %s lost its lease; stopping here", self.evaluation.pk)
                self.lost = True
            if held is None or status != Evaluation.Status.RUNNING:
                self.stopping = True
                for run_id in list(self.in_flight):
                    with contextlib.suppress(Exception):
                        await self.redis.set(runstate.cancel_key(run_id), "1", ex=3600)


def _beat(evaluation_id: int, busy_s: float) -> str | None:
    Evaluation.objects.filter(pk=evaluation_id).update(busy_s=busy_s)
    return Evaluation.objects.filter(pk=evaluation_id).values_list("status", flat=True).first()


async def evaluate(
    evaluation_id: int, on_progress: Callable[[Progress], None] | None = None
) -> str | None:
    """Run what is left of an evaluation; returns its status, or None when it was
    not ours to run (not queued, or another process holds its lease)."""
    lease = uuid.uuid4().hex
    redis = live.redis_client(max_connections=4)
    try:
        if not await redis.set(
            lease_key(evaluation_id), lease, nx=True, ex=settings.EVAL_LEASE_TTL_S
        ):
            log.info("evaluation %s is being run elsewhere", evaluation_id)
            return None
        async with database_thread():
            return await _evaluate(evaluation_id, lease, redis, on_progress)
    finally:
        with contextlib.suppress(Exception):
            await redis.eval(RELEASE, 1, lease_key(evaluation_id), lease)
        await redis.aclose()


async def _evaluate(evaluation_id, lease, redis, on_progress) -> str | None:
    evaluation = await in_db(_claim, evaluation_id, lease)
    if evaluation is None:
        return None
    runner = _Runner(evaluation, redis, on_progress)
    queue: asyncio.Queue = asyncio.Queue()
    for pair in await in_db(_pending, evaluation):
        queue.put_nowait(pair)
    log.info("evaluation %s: %d pairs to do", evaluation_id, queue.qsize())
    beating = asyncio.create_task(runner.heartbeat(lease))
    try:
        # A TaskGroup: when one pair breaks the harness itself (the database is
        # gone), the others stop too, and the task says so (evals/tasks.py).
        async with asyncio.TaskGroup() as group:
            for _ in range(settings.EVAL_CONCURRENCY):
                group.create_task(runner.work(queue))
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        status = await in_db(
            _finish,
            evaluation_id,
            runner.stopping and not runner.lost,
            runner.busy_s(),
            runner.refused,
        )
    return status


async def regrade(evaluation_id: int) -> int:
    """Grade the saved answers again with today's graders, no model called: after a
    grader is fixed, an evaluation's numbers follow without running it again.
    Rubric items are left alone (their grader is a model). Returns the rows changed."""
    evaluation = await in_db(
        lambda: Evaluation.objects.select_related("dataset").get(pk=evaluation_id)
    )
    kind = evaluation.dataset.kind
    if kind == "rubric":
        return 0
    results = await in_db(
        lambda: list(
            Result.objects.filter(evaluation=evaluation).exclude(answer="").select_related("item")
        )
    )
    changed = 0
    for result in results:
        fields: dict[str, object]
        try:
            grade = await grading.grade(kind, result.item.data, result.answer)
        except grading.GradingError as exc:
            status, fields = Result.Status.GRADE_ERROR, {"error": str(exc)}
        else:
            status = Result.Status.GRADED
            fields = {"correct": grade.correct, "score": grade.score, "grade": grade.detail}
        if status != result.status or fields.get("correct") != result.correct:
            changed += 1
        for name, value in {"status": status, **fields}.items():
            setattr(result, name, value)
        await in_db(result.save)
    return changed

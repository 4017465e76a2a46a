"""A worker killed mid-evaluation: the finished results stay, the lease lapses, the
sweep queues the evaluation again, and the next worker does only what was left."""

import json
import signal
import sys

import pytest
from django.db import connection

from evals import control, datasets, systems
from evals.models import Evaluation, Result
from evals.tasks import resume_interrupted
from tests.conftest import child_env, database_url, start, stop, wait_for, wait_until
from tests.pipeline_kit import ScriptedPanel
from tests.scripted_server import Reply

pytestmark = [
    pytest.mark.stack,
    pytest.mark.database,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redis_ready"),
]

QUEUE = "eval-resume-test"  # a queue of its own: no other worker may take this evaluation
ITEMS = 12


def _worker(name: str):
    env = child_env(
        DATABASE_URL=database_url(connection.settings_dict),
        EVAL_CONCURRENCY="1",
        EVAL_LEASE_TTL_S="3",
        EVAL_QUEUE=QUEUE,
    )
    command = [sys.executable, "-m", "celery", "-A", "fusionroom", "worker", "--pool", "threads"]
    command += ["-Q", QUEUE, "-n", f"{name}@localhost", "--without-gossip", "--without-mingle"]
    return start(name, command, env)


def test_an_evaluation_resumes_after_its_worker_is_killed(settings):
    settings.EVAL_QUEUE, settings.EVAL_LEASE_TTL_S = QUEUE, 3
    kit = ScriptedPanel(seats=1)
    first = second = None
    try:
        kit.seats[0].default = Reply.stream(["Answer: 4"], first_delay=0.4)
        lines = [
            json.dumps({"id": n, "question": "2 + 2?", "answers": ["4"]}) for n in range(ITEMS)
        ]
        kind, items = datasets.parse(lines)
        dataset = datasets.save(kit.user, "Resume", kind, items, source="test")
        specs = systems.parse(["seats"], kit.panel, kit.user)
        evaluation = control.create(kit.user, dataset, specs)  # queued on QUEUE at once

        first = _worker("eval-worker-1")
        wait_for(
            lambda: Result.objects.filter(evaluation=evaluation).count() >= 3,
            "three results from the first worker",
            60,
            [("eval-worker-1", first)],
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        kept = set(Result.objects.filter(evaluation=evaluation).values_list("pk", flat=True))
        assert 3 <= len(kept) < ITEMS
        evaluation.refresh_from_db()
        assert evaluation.status == Evaluation.Status.RUNNING  # nobody is running it now

        assert resume_interrupted() == 0  # its lease has not lapsed yet
        resumed = wait_until(resume_interrupted, 10, "the lease to lapse", every=0.25)
        assert resumed == 1  # queued again on QUEUE

        second = _worker("eval-worker-2")
        wait_for(
            lambda: Evaluation.objects.get(pk=evaluation.pk).status == Evaluation.Status.DONE,
            "the second worker to finish the evaluation",
            90,
            [("eval-worker-2", second)],
        )
        results = Result.objects.filter(evaluation=evaluation)
        assert results.count() == ITEMS  # one per item: none lost, none doubled
        assert kept <= set(results.values_list("pk", flat=True))  # the first worker's kept
        assert all(r.correct for r in results)
        evaluation.refresh_from_db()
        assert evaluation.attempts == 2
    finally:
        # A warm shutdown waits for the evaluation in hand: stop() kills after 10 s.
        stop([(name, w) for name, w in (("first", first), ("second", second)) if w is not None])
        kit.close()

"""A worker killed mid-run: the sweeper closes the run, keeping what had arrived;
and a Redis that restarted empty is given a TTL before a missing heartbeat counts."""

import signal
import sys
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.utils import timezone

from chat.engine import live
from chat.engine.runs import create_run
from chat.models import Answer, Conversation, Run
from chat.tasks import execute_run, sweep_abandoned_runs
from tests.conftest import PrivateRedis, child_env, database_url, start, wait_for, wait_until
from tests.pipeline_kit import ScriptedPanel
from tests.scripted_server import Reply

pytestmark = [
    pytest.mark.stack,
    pytest.mark.database,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redis_ready"),
]

QUEUE = "sweeper-test"  # a queue of its own: no other worker may take this run


def test_a_run_whose_worker_was_killed_is_swept(settings):
    settings.RUN_HEARTBEAT_TTL_S = 2
    kit = ScriptedPanel(seats=2)
    try:
        for server in kit.seats:
            server.enqueue(Reply.stream(["partial answer"], done=False, finish=None, hang=True))
        run_id = kit.ask()
        env = child_env(
            DATABASE_URL=database_url(connection.settings_dict), RUN_HEARTBEAT_TTL_S="2"
        )
        worker = start(
            "sweeper-worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "fusionroom",
                "worker",
                "--pool",
                "threads",
                "-Q",
                QUEUE,
                "-n",
                "sweeper@localhost",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )
        try:
            execute_run.apply_async(args=[run_id], queue=QUEUE)
            client = redis.Redis.from_url(settings.REDIS_URL)
            seat_ids = list(Answer.objects.filter(run_id=run_id).values_list("pk", flat=True))
            wait_for(
                lambda: all(client.get(live.text_key(pk)) for pk in seat_ids),
                "the seats to stream",
                60,
                [("sweeper-worker", worker)],
            )
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert Run.objects.get(pk=run_id).status == Run.Status.PANEL  # stuck, as feared

        assert sweep_abandoned_runs() == 0  # the heartbeat has not expired yet
        swept = wait_until(sweep_abandoned_runs, 10, "the heartbeat to expire", every=0.25)
        assert swept == 1
        run = Run.objects.get(pk=run_id)
        assert run.status == Run.Status.FAILED and run.failure_reason == "worker_lost"
        assert "stopped before it finished" in run.failure_detail
        for answer in run.seat_answers:
            assert answer.status == Answer.Status.FAILED
            assert answer.text == "partial answer"  # recovered from the live copy
        assert sweep_abandoned_runs() == 0
        client.close()
    finally:
        kit.close()


def test_the_sweeper_trusts_no_missing_heartbeat_until_redis_has_been_up_a_ttl(
    settings, alice, smollm2
):
    """A Redis that restarted empty lost every heartbeat; live workers set theirs
    again within the TTL, so until then the sweeper closes nothing."""
    fresh = PrivateRedis("sweeper-redis")
    fresh.start()
    try:
        settings.REDIS_URL, settings.RUN_HEARTBEAT_TTL_S = fresh.url, 2
        conversation = Conversation.objects.create(owner=alice, model=smollm2)
        run = create_run(conversation, "Anyone there?").run
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.PANEL, started_at=timezone.now() - timedelta(minutes=5)
        )
        assert sweep_abandoned_runs() == 0  # Redis is seconds old: no verdict yet
        assert Run.objects.get(pk=run.pk).status == Run.Status.PANEL
        swept = wait_until(sweep_abandoned_runs, 10, "Redis to be up a TTL", every=0.25)
        assert swept == 1  # up a whole TTL, still no heartbeat: lost
        assert Run.objects.get(pk=run.pk).failure_reason == "worker_lost"
    finally:
        fresh.stop()

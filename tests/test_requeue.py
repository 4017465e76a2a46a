"""A message queued before Redis restarted empty: the sweeper sends its task again,
every time and once (chat/tasks.py). The Redis uptime is given, and the task is
caught as it is sent; tests/test_faults.py makes the same fault on a real stack."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from chat import tasks
from chat.models import Conversation, Message, Run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_ready")]


@pytest.fixture
def sent(monkeypatch):
    """The runs whose task the sweeper sent; `failures` makes the next sends fail."""

    class Sent(list):
        failures = 0

    sent = Sent()

    def publish(run_id: int) -> None:
        if sent.failures:
            sent.failures -= 1
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        sent.append(run_id)

    monkeypatch.setattr(tasks, "publish", publish)
    return sent


@pytest.fixture
def redis_up_for(monkeypatch):
    """Make INFO say Redis has been up this many (whole) seconds."""

    def up_for(seconds: int) -> None:
        monkeypatch.setattr(tasks, "_redis_uptime", lambda client: seconds)

    return up_for


def waiting_run(owner, model, queued_ago_s: float) -> int:
    """A run no worker has taken, its message sent `queued_ago_s` seconds ago, and
    no claim of a former sweep left in Redis."""
    conversation = Conversation.objects.create(owner=owner, model=model)
    run = Run.objects.create(
        message=Message.objects.create(conversation=conversation, content="Hi?")
    )
    Run.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - timedelta(seconds=queued_ago_s)
    )
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"fr:run:{run.pk}:requeued")
    client.close()
    return run.pk


def test_a_run_queued_in_the_second_before_the_restart_is_sent_again(
    alice, smollm2, sent, redis_up_for
):
    # INFO counts whole seconds: "up 2 s" is said 1.2 s after a start at x.9 s, so a
    # message sent 1.5 s ago came before it, and its task went with the restart.
    run_id = waiting_run(alice, smollm2, queued_ago_s=1.5)
    redis_up_for(2)
    tasks.sweep_abandoned_runs()
    assert sent == [run_id]
    tasks.sweep_abandoned_runs()
    assert sent == [run_id]  # once per Redis start


def test_a_task_that_could_not_be_sent_is_sent_by_the_next_sweep(
    alice, smollm2, sent, redis_up_for
):
    run_id = waiting_run(alice, smollm2, queued_ago_s=10)
    redis_up_for(5)
    sent.failures = 1  # a broker connection from before the restart, say
    tasks.sweep_abandoned_runs()
    assert sent == []
    assert Run.objects.get(pk=run_id).status == Run.Status.QUEUED  # still waiting, not failed
    tasks.sweep_abandoned_runs()
    assert sent == [run_id]
    tasks.sweep_abandoned_runs()
    assert sent == [run_id]


def test_a_run_queued_after_the_restart_is_left_to_its_own_task(alice, smollm2, sent, redis_up_for):
    waiting_run(alice, smollm2, queued_ago_s=0.5)
    redis_up_for(3)  # its task went into this Redis: a worker takes it from there
    tasks.sweep_abandoned_runs()
    assert sent == []

"""Issue 26: an API request answered by one model alone runs in the web process that
took it, with no queue hop, and keeps every guarantee of a worker's run: its row
before the first byte, a stop within a second, the sweeper closing it if the process
dies, its cost charged, its trace complete."""

import asyncio
import signal
import sys
import time

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connection

from chat.engine import in_web, live, runs
from chat.engine.runs import start_conversation, stop_run, taken_here
from chat.models import Answer, Run
from chat.tasks import sweep_abandoned_runs
from limits.models import Spend
from panels.models import CatalogModel, Panel, Provider, Seat
from tests.conftest import child_env, database_url, start, wait_for, wait_until
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [
    pytest.mark.database,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redis_ready"),
]


@pytest.fixture(autouse=True)
def no_queue(settings, monkeypatch):
    """A run started here never goes through the queue: sending it is a failure."""
    settings.CALL_MAX_RETRIES = 0
    sent: list[int] = []
    monkeypatch.setattr(runs, "publish", sent.append)
    return sent


@pytest.fixture
def upstream():
    with ScriptedServer() as server:
        yield server


def model_at(server) -> CatalogModel:
    provider = Provider.objects.create(name="Scripted", base_url=server.base_url)
    return CatalogModel.objects.create(
        provider=provider,
        model_id="scripted-1",
        display_name="Scripted",
        input_price="100",
        output_price="200",
    )


def ask_alone(user, model) -> Run:
    return start_conversation(user, model, "How long is a piece of string?", "api", here=True).run


def test_a_one_model_run_is_taken_at_creation_and_answers_in_this_process(
    alice, upstream, no_queue
):
    upstream.enqueue(
        Reply.stream(
            ["Twice ", "half its length."], usage={"prompt_tokens": 10, "completion_tokens": 5}
        )
    )
    run = ask_alone(alice, model_at(upstream))
    # The run's row, taken, before any byte: nothing was sent to the upstream yet.
    assert taken_here(run) and Run.objects.get(pk=run.pk).status == Run.Status.PANEL
    assert not upstream.requests and not no_queue

    async def execute():
        await in_web.start(run.pk)

    asyncio.run(execute())
    run.refresh_from_db()
    answer = run.answers.get()
    assert run.status == Run.Status.DONE and answer.text == "Twice half its length."
    assert not no_queue, "no queue hop"
    # Charged and traced as a worker's run: the ledger row, the attempt, the timings.
    assert Spend.objects.filter(run=run).exists() and run.cost_usd and run.cost_usd > 0
    assert answer.attempts and answer.first_token_ms is not None and answer.latency_ms
    assert set(run.stage_ms) >= {"panel", "total"}


def test_a_panel_is_still_sent_to_the_workers(alice, upstream, no_queue):
    judged = Panel.objects.create(owner=alice, slug="p", name="p")
    model = model_at(upstream)
    judged.judge = judged.synthesizer = model
    judged.save()
    Seat.objects.create(panel=judged, position=0, model=model)
    run = start_conversation(alice, judged, "Hi?", "api", here=True).run
    assert not taken_here(run) and no_queue == [run.pk]


def test_a_stop_reaches_a_run_in_this_process_within_a_second(alice, upstream):
    upstream.enqueue(Reply.stream(["word "] * 200, delay=0.05))
    run = ask_alone(alice, model_at(upstream))

    async def stop_midway() -> float:
        task = in_web.start(run.pk)
        while not upstream.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # streaming
        asked = time.monotonic()
        await sync_to_async(stop_run)(await sync_to_async(Run.objects.get)(pk=run.pk))
        await asyncio.wait_for(task, 5)
        return time.monotonic() - asked

    took = asyncio.run(stop_midway())
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and took < 1.0
    answer = run.answers.get()
    assert answer.status == Answer.Status.CANCELLED and answer.text.startswith("word ")


CHILD = """
import asyncio, sys
import django

django.setup()
from chat.engine import in_web


async def main():
    await in_web.start(int(sys.argv[1]))


asyncio.run(main())
"""


@pytest.mark.stack
def test_the_sweeper_closes_a_run_whose_web_process_died(settings, alice, upstream):
    """The web process that took the run is SIGKILLed mid-answer: the run is closed in
    words within the heartbeat's TTL, its text kept, as a dead worker's is."""
    settings.RUN_HEARTBEAT_TTL_S = 2
    upstream.enqueue(Reply.stream(["partial answer"], done=False, finish=None, hang=True))
    run = ask_alone(alice, model_at(upstream))
    env = child_env(DATABASE_URL=database_url(connection.settings_dict), RUN_HEARTBEAT_TTL_S="2")
    web = start("web-run", [sys.executable, "-c", CHILD, str(run.pk)], env)
    client = redis.Redis.from_url(settings.REDIS_URL)
    answer_id = Answer.objects.get(run=run).pk
    try:
        wait_for(
            lambda: client.get(live.text_key(answer_id)),
            "the answer to stream",
            60,
            [("web-run", web)],
        )
    finally:
        web.send_signal(signal.SIGKILL)
        web.wait(10)
        client.close()
    assert Run.objects.get(pk=run.pk).status == Run.Status.PANEL  # stuck, as feared
    swept = wait_until(sweep_abandoned_runs, 15, "the heartbeat to expire", every=0.25)
    assert swept == 1
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.failure_reason == "worker_lost"
    assert run.answers.get().text == "partial answer"  # recovered from the live copy


def test_its_follower_here_is_handed_the_events_in_memory_and_the_room_still_gets_them(
    alice, upstream, monkeypatch
):
    from chat.api.follow import final_text
    from chat.engine import live, tap

    upstream.enqueue(Reply.stream(["One ", "two ", "three."], delay=0.02))
    run = ask_alone(alice, model_at(upstream))
    conversation = run.message.conversation.events_key

    async def never(*args, **kwargs):
        raise AssertionError("a follower with a tap does not read the stream")

    async def follow():
        task = in_web.start(run.pk)
        handed = tap.take(run.pk)
        assert handed is not None and tap.take(run.pk) is None  # taken once
        with monkeypatch.context() as patched:
            patched.setattr(live, "read_events", never)
            got = [item async for item in final_text(run.pk, conversation, asyncio.Event(), handed)]
        await task
        redis = live.redis_client()
        try:
            return got, await live.events_since(redis, conversation, "0-0")
        finally:
            await redis.aclose()

    got, stream = asyncio.run(follow())
    assert "".join(text for kind, text in got if kind == "text") == "One two three."
    assert got[-1][0] == "progress" and got[-1][1]["type"] == "run.done"
    # The room's stream has the same deltas, for every tab showing the conversation.
    deltas = [event for _, event in stream if event["type"] == "answer.delta"]
    assert "".join(d["text"] for d in deltas) == "One two three."

"""Issue 26: what stands between a request and its first upstream byte, and between
one stage's last byte and the next one's request, is as little as the guarantees
allow: fewer trips to the database and to Redis, the same rows and events."""

import asyncio
import threading

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from chat.engine import db, seats
from chat.models import Run
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def kit():
    kit = ScriptedPanel()
    yield kit
    kit.close()


def test_a_web_trip_keeps_its_thread_s_sqlite_connection():
    """Outside a run (a view's trip), a thread opens SQLite once, not once a trip."""
    if connection.vendor != "sqlite":
        pytest.skip("with PostgreSQL a trip hands its connection back to the pool")
    opened: list[int] = []

    def count(sender, **kwargs):
        opened.append(threading.get_ident())

    async def trips():
        for _ in range(8):
            await db.in_db(lambda: Run.objects.count())

    connection_created.connect(count)
    try:
        asyncio.run(trips())
    finally:
        connection_created.disconnect(count)
    assert opened and len(opened) == len(set(opened)), "a thread opened SQLite twice"


def test_a_failed_trip_drops_its_connection():
    """A trip that broke mid-transaction leaves nothing open for the thread's next one."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")

    def broken():
        connection.set_autocommit(False)
        raise RuntimeError("boom")

    def state():
        return connection.connection is None or connection.get_autocommit()

    async def trips():
        with pytest.raises(RuntimeError):
            await db.in_db(broken)
        return [await db.in_db(state) for _ in range(4)]

    assert all(asyncio.run(trips()))


def test_the_stages_enter_with_their_calls_and_the_seats_are_prepared_as_the_run_is_taken(
    kit, monkeypatch
):
    kit_replies = [Reply.stream(["Canberra."]), Reply.stream(["Sydney."]), Reply.stream(["C."])]
    for server, reply in zip(kit.seats, kit_replies, strict=True):
        server.enqueue(reply)
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["The capital ", "is Canberra."]))
    trips: list[str] = []
    original = db.in_db

    async def counted(fn, *args):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(fn, *args)

    monkeypatch.setattr(seats, "in_db", counted)
    run_id = kit.ask()
    events = asyncio.run(run_and_listen(kit, run_id))

    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.DONE and run.synthesis.text == "The capital is Canberra."
    assert "_seat_calls" not in trips, "the seats' calls were prepared when the run was taken"
    types = [e["type"] for e in events]
    for stage, role in (("judging", "judge"), ("synthesizing", "synthesizer")):
        entered = next(
            i for i, e in enumerate(events) if e["type"] == "run.status" and e["status"] == stage
        )
        # The stage, then its call's row, in one round trip: nothing between them.
        assert events[entered + 1]["type"] == "answer.created"
        assert events[entered + 1]["role"] == role
    assert (
        types.index("analysis.ready")
        < [i for i, e in enumerate(events) if e.get("status") == "synthesizing"][0]
    )


def test_a_run_s_database_thread_is_kept_for_the_next_run():
    """With SQLite, the next run takes the last one's thread and its open connection."""
    if connection.vendor != "sqlite":
        pytest.skip("with PostgreSQL a trip hands its connection back to the pool")
    opened: list[int] = []

    def count(sender, **kwargs):
        opened.append(threading.get_ident())

    async def one_run() -> int:
        async with db.database_thread():
            await db.in_db(lambda: Run.objects.count())
            return await db.in_db(threading.get_ident)

    async def runs() -> list[int]:
        return [await one_run() for _ in range(5)]

    connection_created.connect(count)
    try:
        threads = asyncio.run(runs())
    finally:
        connection_created.disconnect(count)
    assert len(set(threads)) == 1 and len(opened) <= 1

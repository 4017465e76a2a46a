"""The API and the `fusion` command follow a run through its conversation's Redis Stream:
from the oldest event the stream keeps (their run was started before they listened),
skipping other runs' events, ending at the run's end."""

import asyncio
import contextlib
import io
import random
import uuid

import pytest

from chat.api.follow import final_text
from chat.engine import live
from chat.management.commands.fusion import Command
from tests.test_conversation_websocket import delta, make_conversation

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


async def test_the_api_reads_the_final_answer_from_before_it_listened_to_the_end():
    _, conversation, run, answer = await make_conversation()
    redis = live.redis_client()
    other_run = {"type": "answer.delta", "run": run.pk + 1000, "answer": 1, "seq": 1, "text": "x"}
    # Before the caller listens: the run has started and said its first words.
    await live.announce(redis, conversation.events_key, {"type": "run.started", "run": run.pk})
    await live.append(redis, conversation.events_key, delta(answer, 1, "Hello"))
    await live.announce(redis, conversation.events_key, other_run)

    got = []

    async def follow():
        async for item in final_text(run.pk, conversation.events_key, asyncio.Event()):
            got.append(item)

    following = asyncio.create_task(follow())
    await live.append(redis, conversation.events_key, delta(answer, 2, ", wor"))
    # A delta Redis lost (seq 3): the next one is read from the live copy instead.
    await live.rewrite(redis, answer.pk, "Hello, world!", 4)
    await live.announce(redis, conversation.events_key, delta(answer, 4, "!"))
    await live.announce(redis, conversation.events_key, {"type": "run.done", "run": run.pk})
    await asyncio.wait_for(following, 10)
    assert got == [
        ("progress", {"type": "run.started", "run": run.pk}),
        ("text", "Hello"),
        ("text", ", wor"),
        ("text", "ld!"),
        ("progress", {"type": "run.done", "run": run.pk}),
    ]
    await redis.aclose()


async def test_the_command_prints_the_runs_progress_until_it_is_done():
    _, conversation, run, answer = await make_conversation()
    redis = live.redis_client()
    started = {"type": "answer.started", "run": run.pk, "role": "seat", "model": "SmolLM2"}
    status = {"type": "run.status", "run": run.pk, "status": "judging"}
    await live.announce(redis, conversation.events_key, started)
    await live.announce(
        redis, conversation.events_key, {**status, "run": run.pk + 1000}
    )  # not ours
    await live.announce(redis, conversation.events_key, status)
    await live.announce(redis, conversation.events_key, {"type": "run.done", "run": run.pk})
    out = io.StringIO()
    command = Command(stdout=out)
    await asyncio.wait_for(command._follow(conversation.events_key, run.pk, timeout=10), 10)
    lines = [line.split("s  ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["seat: SmolLM2 started", "stage: judging"]
    await redis.aclose()


async def test_a_cancellation_is_never_lost_in_a_blocking_read():
    """redis-py can absorb a cancellation that lands as a blocking read's reply comes
    in; read_events raises it. Without that, an API stream whose client hung up read
    on until Daphne killed the request 10 s later (10 of these 200 rounds, measured
    before the fix)."""
    redis = live.redis_client()
    key = f"test:cancel-race:{uuid.uuid4().hex}"
    lost = 0
    try:
        for _ in range(200):

            async def follow():
                while True:
                    await live.read_events(redis, {key: "$"}, 1000)

            async def write():
                await asyncio.sleep(random.uniform(0, 0.02))
                await redis.xadd(key, {"e": "{}"}, maxlen=10)

            following, writing = asyncio.create_task(follow()), asyncio.create_task(write())
            await asyncio.sleep(random.uniform(0, 0.03))  # the reply comes before, during or after
            following.cancel()
            done, _ = await asyncio.wait({following}, timeout=2)
            if not done:
                lost += 1
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
            await writing
    finally:
        await redis.delete(key)
        await redis.aclose()
    assert lost == 0, f"{lost} of 200 cancellations were absorbed by the read"

"""A reconnecting socket resumes from the last event id it had: the events after it,
in order, none twice, no snapshot. Through the real ASGI app and real Redis."""

import asyncio

import pytest
import redis
from django.conf import settings

from chat.conversation_feed import Subscription, conversation_feed
from chat.engine import live
from tests.conftest import until
from tests.test_conversation_websocket import (
    communicator,
    delta,
    make_conversation,
    session_cookie,
    without_id,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


async def receive_until_quiet(ws, quiet: float = 0.5) -> list[dict]:
    frames = []
    while not await ws.receive_nothing(timeout=quiet):
        frames.append(await ws.receive_json_from(timeout=5))
    return frames


async def test_a_socket_that_reconnects_with_its_last_id_is_sent_what_it_missed():
    user, conversation, _, answer = await make_conversation()
    cookie = await session_cookie(user)
    redis = live.redis_client()
    ws = communicator(f"/ws/conversations/{conversation.pk}/", cookie)
    assert (await ws.connect())[0]
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["event_id"] == "0-0"
    await live.append(redis, conversation.events_key, delta(answer, 1, "Hel"))
    first = await ws.receive_json_from(timeout=5)
    assert without_id(first) == delta(answer, 1, "Hel")
    await ws.disconnect()

    # While the socket is away, the answer goes on.
    missed = [delta(answer, 2, "lo, "), delta(answer, 3, "world")]
    for event in missed:
        await live.append(redis, conversation.events_key, event)

    ws = communicator(f"/ws/conversations/{conversation.pk}/?after={first['event_id']}", cookie)
    assert (await ws.connect())[0]
    assert await ws.receive_json_from(timeout=5) == {"type": "resumed", "after": first["event_id"]}
    await live.append(redis, conversation.events_key, delta(answer, 4, "!"))  # live again
    frames = await receive_until_quiet(ws)
    assert [without_id(f) for f in frames] == [*missed, delta(answer, 4, "!")]
    ids = [live.id_order(f["event_id"]) for f in frames]
    assert ids == sorted(ids) and live.id_order(first["event_id"]) < ids[0]
    await ws.disconnect()
    await redis.aclose()


@pytest.mark.parametrize("after", ["1-0", "not-an-id", ""])
async def test_an_id_the_stream_no_longer_holds_gets_a_snapshot(after):
    """Trimmed, expired, lost in a Redis restart, or never valid: the events between
    may be gone, so the socket is made whole by a snapshot instead."""
    user, conversation, _, answer = await make_conversation()
    redis = live.redis_client()
    await live.append(redis, conversation.events_key, delta(answer, 1, "Hello"))
    ws = communicator(
        f"/ws/conversations/{conversation.pk}/?after={after}", await session_cookie(user)
    )
    assert (await ws.connect())[0]
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    assert snapshot["runs"][0]["answers"][0]["text"] == "Hello"
    assert snapshot["event_id"] == await live.last_event_id(redis, conversation.events_key)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()
    await redis.aclose()


async def test_a_socket_joining_while_the_reader_is_ahead_misses_nothing_and_gets_nothing_twice():
    """One socket keeps the process's reader on the conversation while events pour in; a
    second reconnects from an early id in the middle of it. It catches up to the
    reader, then takes the reader's events: every event after its id, once, in order."""
    user, conversation, _, answer = await make_conversation()
    cookie = await session_cookie(user)
    redis = live.redis_client()
    watcher = communicator(f"/ws/conversations/{conversation.pk}/", cookie)
    assert (await watcher.connect())[0]
    await watcher.receive_json_from(timeout=5)
    await live.append(redis, conversation.events_key, delta(answer, 1, "t1 "))
    resume_from = (await watcher.receive_json_from(timeout=5))["event_id"]

    poured = [1]

    async def pour() -> None:
        for seq in range(2, 302):
            await live.append(redis, conversation.events_key, delta(answer, seq, f"t{seq} "))
            poured.append(seq)
            if seq % 20 == 0:
                await asyncio.sleep(0.005)  # let the reader run ahead between bursts

    pouring = asyncio.create_task(pour())
    # The joiner comes in the middle of it: after a few bursts, well before the end.
    await until(lambda: len(poured) > 40, 10, "a few bursts of events")
    joiner = communicator(f"/ws/conversations/{conversation.pk}/?after={resume_from}", cookie)
    assert (await joiner.connect())[0]
    await pouring
    frames = await receive_until_quiet(joiner)
    assert frames[0]["type"] == "resumed"
    assert [f["seq"] for f in frames[1:]] == list(range(2, 302))
    seen = await receive_until_quiet(watcher)
    assert [f["seq"] for f in seen] == list(range(2, 302))
    for ws in (watcher, joiner):
        await ws.disconnect()
    await redis.aclose()


def blocked_reads(db: int) -> list[dict]:
    """Connections to this database blocked in an XREAD now (CLIENT LIST flag b)."""
    client = live.sync_redis()
    try:
        return [
            c
            for c in client.client_list()
            if c["db"] == str(db) and c["cmd"] == "xread" and "b" in c["flags"]
        ]
    finally:
        client.close()


async def test_one_reader_per_process_however_many_sockets_and_conversations():
    conversations = [await make_conversation(name) for name in ("alice", "bob")]
    sockets = []
    for user, conversation, _, _ in conversations:
        cookie = await session_cookie(user)
        for _ in range(3):
            ws = communicator(f"/ws/conversations/{conversation.pk}/", cookie)
            assert (await ws.connect())[0]
            await ws.receive_json_from(timeout=5)
            sockets.append(ws)
    db = redis.Redis.from_url(settings.REDIS_URL).connection_pool.connection_kwargs.get("db", 0)
    feed = conversation_feed()
    assert set(feed.streams) == {conversation.events_key for _, conversation, _, _ in conversations}
    assert sum(len(subs) for subs in feed.streams.values()) == 6
    await until(lambda: blocked_reads(db), 5, "the reader to block in its read")
    assert len(blocked_reads(db)) == 1  # six sockets, two conversations, one blocked read
    for ws in sockets:
        await ws.disconnect()
    await until(lambda: not feed.streams and not blocked_reads(db), 5, "the reader to end")
    assert feed.streams == {} and len(blocked_reads(db)) == 0  # the reader ended with them


async def test_a_socket_that_does_not_read_is_cut_off_not_fed_for_ever(monkeypatch):
    """Events wait for a socket up to a limit; past it the socket is to be closed
    (the browser then resumes from the last event it had), and the events that did
    not fit are not counted as given."""
    monkeypatch.setattr("chat.conversation_feed.PENDING_LIMIT", 2)
    subscription = Subscription("fr:conversation:1:events", "5-0")
    for n in range(1, 5):
        subscription.put(f"5-{n}", {"n": n})
    subscription.put("4-9", {"n": 0})  # older than its start: never given
    assert [event["n"] for _, event in subscription.pending] == [1, 2]
    assert subscription.overflowed and subscription.last == "5-2"

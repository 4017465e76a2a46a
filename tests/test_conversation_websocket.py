"""The conversation websocket, through the real ASGI app and the conversations' Redis Streams."""

import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from chat.engine import live
from chat.models import Answer, Conversation, Message, Run
from fusionroom.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@sync_to_async
def make_conversation(username: str = "alice"):
    user = get_user_model().objects.create_user(username, password="pw-long-enough-1")
    conversation = Conversation.objects.create(owner=user)
    # Ids come back after a test's rows are flushed, and an earlier test's run may
    # have written this id's stream: start from an empty one, as a new conversation has.
    client = live.sync_redis()
    client.delete(conversation.events_key)
    client.close()
    run = Run.objects.create(
        message=Message.objects.create(conversation=conversation, content="hi")
    )
    answer = Answer.objects.create(
        run=run, model_key="smollm2-135m", model_name="SmolLM2", status=Answer.Status.STREAMING
    )
    return user, conversation, run, answer


@sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(path: str, cookie: str | None = None, origin: str = "http://localhost"):
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def delta(answer, seq: int, text: str) -> dict:
    return {
        "type": "answer.delta",
        "run": answer.run_id,
        "answer": answer.pk,
        "seq": seq,
        "text": text,
    }


def without_id(event: dict) -> dict:
    assert "event_id" in event, event
    return {k: v for k, v in event.items() if k != "event_id"}


async def test_owner_gets_a_snapshot_with_live_text_then_events():
    user, conversation, run, answer = await make_conversation()
    redis = live.redis_client()
    await live.append(redis, conversation.events_key, delta(answer, 1, "Hello"))
    await live.append(redis, conversation.events_key, delta(answer, 2, ", wor"))
    ws = communicator(f"/ws/conversations/{conversation.pk}/", await session_cookie(user))
    connected, _ = await ws.connect()
    assert connected
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    item = snapshot["runs"][0]["answers"][0]
    assert (item["answer"], item["text"], item["seq"]) == (answer.pk, "Hello, wor", 2)

    assert await live.append(redis, conversation.events_key, delta(answer, 3, "ld")) == 3
    assert without_id(await ws.receive_json_from(timeout=5)) == delta(answer, 3, "ld")

    await ws.send_json_to({"type": "resync"})
    again = await ws.receive_json_from(timeout=5)
    assert again["runs"][0]["answers"][0]["text"] == "Hello, world"
    await ws.disconnect()
    await redis.aclose()


async def test_anonymous_socket_is_refused():
    _, conversation, _, _ = await make_conversation()
    ws = communicator(f"/ws/conversations/{conversation.pk}/")
    connected, code = await ws.connect()
    assert not connected and code == 4401
    await ws.disconnect()


async def test_someone_elses_conversation_is_refused():
    _, conversation, _, _ = await make_conversation("alice")
    bob = await sync_to_async(get_user_model().objects.create_user)("bob", password="pw-long-1")
    ws = communicator(f"/ws/conversations/{conversation.pk}/", await session_cookie(bob))
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()


async def test_missing_conversation_is_refused():
    user, _, _, _ = await make_conversation()
    ws = communicator("/ws/conversations/987654/", await session_cookie(user))
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()


async def test_foreign_origin_is_refused():
    user, conversation, _, _ = await make_conversation()
    ws = communicator(
        f"/ws/conversations/{conversation.pk}/",
        await session_cookie(user),
        origin="http://evil.example",
    )
    connected, _ = await ws.connect()
    assert not connected
    await ws.disconnect()


EVENT_TYPES = [
    {"type": "run.started", "status": "panel", "answers": []},
    {"type": "run.status", "status": "judging"},
    {"type": "answer.created", "answer": 1, "role": "judge"},
    {"type": "answer.started", "answer": 1, "role": "seat", "model": "M"},
    {"type": "answer.delta", "answer": 1, "seq": 1, "text": "hi"},
    {
        "type": "answer.done",
        "answer": 1,
        "role": "seat",
        "seq": 1,
        "status": "done",
        "html": "<p>hi</p>",
        "error": "",
        "stats": {},
    },
    {
        "type": "answer.failed",
        "answer": 1,
        "role": "seat",
        "seq": 0,
        "status": "failed",
        "html": "",
        "error": "down",
        "stats": {},
    },
    {"type": "analysis.ready", "structured": True, "analysis": {"consensus": []}, "raw": ""},
    {
        "type": "run.done",
        "status": "done",
        "failure_reason": "",
        "failure_detail": "",
        "cost": "0.01",
        "solo_cost": "0.02",
        "stage_ms": {"total": 10},
    },
]


async def test_every_event_type_reaches_the_browser_in_order():
    user, conversation, run, _ = await make_conversation()
    ws = communicator(f"/ws/conversations/{conversation.pk}/", await session_cookie(user))
    assert (await ws.connect())[0]
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["runs"][0]["run"] == run.pk and "stage_ms" in snapshot["runs"][0]
    redis = live.redis_client()
    for event in EVENT_TYPES:
        await live.announce(redis, conversation.events_key, {"run": run.pk, **event})
    for event in EVENT_TYPES:
        assert without_id(await ws.receive_json_from(timeout=5)) == {"run": run.pk, **event}
    await ws.disconnect()
    await redis.aclose()


async def test_events_of_other_conversations_never_arrive():
    alice, alices_conversation, run, _ = await make_conversation("alice")
    charlie, charlies_conversation, _, _ = await make_conversation("charlie")
    ws = communicator(
        f"/ws/conversations/{charlies_conversation.pk}/", await session_cookie(charlie)
    )
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=5)  # charlie's own snapshot
    event = {"type": "answer.delta", "run": run.pk, "answer": 1, "seq": 1, "text": "secret"}
    redis = live.redis_client()
    await live.announce(redis, alices_conversation.events_key, event)
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()
    await redis.aclose()


async def test_unknown_requests_get_a_clear_error():
    user, conversation, _, _ = await make_conversation()
    ws = communicator(f"/ws/conversations/{conversation.pk}/", await session_cookie(user))
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=5)
    await ws.send_json_to({"type": "subscribe", "run": 12345})
    assert await ws.receive_json_from(timeout=5) == {"type": "error", "error": "Unknown request."}
    await ws.disconnect()


async def test_a_resync_loop_gets_one_snapshot_a_second_and_ends_whole():
    user, conversation, _, answer = await make_conversation()
    redis = live.redis_client()
    await live.append(redis, conversation.events_key, delta(answer, 1, "Hello"))
    ws = communicator(f"/ws/conversations/{conversation.pk}/", await session_cookie(user))
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=5)  # the snapshot on connect
    connected = time.monotonic()
    for _ in range(20):
        await ws.send_json_to({"type": "resync"})
    # After the requests: must still be seen.
    await live.append(redis, conversation.events_key, delta(answer, 2, ", world"))

    frames = [(await ws.receive_json_from(timeout=5), time.monotonic())]
    while not await ws.receive_nothing(timeout=1.5):
        frames.append((await ws.receive_json_from(timeout=5), time.monotonic()))
    snapshots = [f for f, _ in frames if f["type"] == "snapshot"]
    waited = next(at for f, at in frames if f["type"] == "snapshot") - connected
    assert [without_id(f) for f, _ in frames if f["type"] != "snapshot"] == [
        delta(answer, 2, ", world")
    ]
    assert 1 <= len(snapshots) <= 2 and {s["type"] for s in snapshots} == {"snapshot"}
    assert waited > 0.8  # held back to the end of the second, not sent at once
    item = snapshots[-1]["runs"][0]["answers"][0]
    assert (item["text"], item["seq"]) == ("Hello, world", 2)  # whole

    # A second later, a browser that lost a frame is answered at once.
    asked = time.monotonic()
    await ws.send_json_to({"type": "resync"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
    assert time.monotonic() - asked < 0.5
    await ws.send_json_to({"type": "resync"})  # promised, then the socket closes first
    await ws.disconnect()
    await redis.aclose()

"""The room websocket, through the real ASGI app and the Redis channel layer."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from chat import streams
from chat.models import Answer, Conversation, Message, Run
from fusionroom.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@sync_to_async
def make_room(username: str = "alice"):
    user = get_user_model().objects.create_user(username, password="pw-long-enough-1")
    room = Conversation.objects.create(owner=user)
    run = Run.objects.create(message=Message.objects.create(conversation=room, content="hi"))
    answer = Answer.objects.create(
        run=run, model_key="smollm2-135m", model_name="SmolLM2", status=Answer.Status.STREAMING
    )
    return user, room, run, answer


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


async def test_owner_gets_a_snapshot_with_live_text_then_events():
    user, room, run, answer = await make_room()
    redis = streams.redis_client()
    await streams.append(redis, answer.pk, "Hello")
    await streams.append(redis, answer.pk, ", wor")
    ws = communicator(f"/ws/conversations/{room.pk}/", await session_cookie(user))
    connected, _ = await ws.connect()
    assert connected
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    live = snapshot["runs"][0]["answers"][0]
    assert (live["answer"], live["text"], live["seq"]) == (answer.pk, "Hello, wor", 2)

    seq = await streams.append(redis, answer.pk, "ld")
    event = {"type": "answer.delta", "answer": answer.pk, "seq": seq, "text": "ld"}
    await streams.announce(get_channel_layer(), room.group_name, event)
    assert await ws.receive_json_from(timeout=5) == event

    await ws.send_json_to({"type": "resync"})
    again = await ws.receive_json_from(timeout=5)
    assert again["runs"][0]["answers"][0]["text"] == "Hello, world"
    await ws.disconnect()
    await redis.aclose()


async def test_anonymous_socket_is_refused():
    _, room, _, _ = await make_room()
    ws = communicator(f"/ws/conversations/{room.pk}/")
    connected, code = await ws.connect()
    assert not connected and code == 4401
    await ws.disconnect()


async def test_someone_elses_room_is_refused():
    _, room, _, _ = await make_room("alice")
    bob = await sync_to_async(get_user_model().objects.create_user)("bob", password="pw-long-1")
    ws = communicator(f"/ws/conversations/{room.pk}/", await session_cookie(bob))
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()


async def test_missing_room_is_refused():
    user, _, _, _ = await make_room()
    ws = communicator("/ws/conversations/987654/", await session_cookie(user))
    connected, code = await ws.connect()
    assert not connected and code == 4404
    await ws.disconnect()


async def test_foreign_origin_is_refused():
    user, room, _, _ = await make_room()
    ws = communicator(
        f"/ws/conversations/{room.pk}/", await session_cookie(user), origin="http://evil.example"
    )
    connected, _ = await ws.connect()
    assert not connected
    await ws.disconnect()

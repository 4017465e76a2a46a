"""A flush of streamed text costs one Redis round trip: the live copy, its sequence
number and the delta in the conversation's stream go in one MULTI/EXEC. Counted by the
clock through a proxy that holds every Redis reply back 200 ms."""

import time

import pytest

from chat.engine import live
from tests.redis_proxy import RedisProxy

pytestmark = pytest.mark.usefixtures("redis_ready")

DELAY_S = 0.2


async def test_a_flush_is_one_round_trip_and_the_delta_is_in_the_conversation_stream():
    proxy = await RedisProxy(reply_delay=DELAY_S).start()
    client = proxy.client(socket_timeout=10)
    direct = live.redis_client()
    conversation, answer = "fr:conversation:987002:events", 987002
    delta = {"type": "answer.delta", "run": 1, "answer": answer, "seq": 1, "text": "Hello"}
    try:
        await client.ping()  # the connection is open: no handshake in what is timed
        started = time.monotonic()
        assert await live.append(client, conversation, delta) == 1
        took = time.monotonic() - started
        assert DELAY_S <= took < 2 * DELAY_S, f"{took:.2f} s: more than one round trip"
        assert await live.live_state(direct, answer) == ("Hello", 1)
        ((_, event),) = await live.events_since(direct, conversation, "-")
        assert event == delta
    finally:
        await direct.delete(conversation, live.text_key(answer), f"fr:answer:{answer}:seq")
        await direct.aclose()
        await client.aclose()
        await proxy.close()

"""An event that cannot be delivered never holds a run: a Redis reply that never
comes (a half-open connection; seen here with channels_redis' group_send: a finished
run whose last event never left kept its evaluation waiting), so announcing is
bounded."""

import time

import pytest

from chat.engine import live
from tests.redis_proxy import RedisProxy

pytestmark = pytest.mark.usefixtures("redis_ready")


async def test_an_announce_whose_reply_is_lost_gives_up_after_its_timeout(monkeypatch):
    monkeypatch.setattr(live, "ANNOUNCE_TIMEOUT_S", 0.2)
    proxy = await RedisProxy().start()
    client = proxy.client(socket_timeout=30)
    direct = live.redis_client()
    conversation = "fr:conversation:987001:events"
    try:
        await client.ping()  # connected through the proxy, replies flowing
        proxy.lose_replies = True
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await live.announce(client, conversation, {"type": "run.done", "run": 1})
        assert time.monotonic() - started < 2
        # The command reached Redis; only its reply was lost.
        ((_, event),) = await live.events_since(direct, conversation, "-")
        assert event == {"type": "run.done", "run": 1}
    finally:
        await direct.delete(conversation)
        await direct.aclose()
        await client.aclose()
        await proxy.close()

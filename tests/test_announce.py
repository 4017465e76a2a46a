"""An event that cannot be delivered never holds a run: a Redis reply that never
comes (a half-open connection; seen here with channels_redis' group_send: a finished
run whose last event never left kept its evaluation waiting), so announcing is
bounded."""

import asyncio
import contextlib
import time
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from chat.engine import live

pytestmark = pytest.mark.usefixtures("redis_ready")


class ReplyLosingProxy:
    """A TCP proxy to the real Redis that, once `lose_replies` is set, still passes
    commands on but drops every reply: the half-open connection of the hang seen."""

    def __init__(self):
        self.lose_replies = False
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, client_in, client_out) -> None:
        target = urlparse(settings.REDIS_URL)
        redis_in, redis_out = await asyncio.open_connection(target.hostname, target.port or 6379)
        for task in (
            self._pipe(client_in, redis_out, lambda: False),
            self._pipe(redis_in, client_out, lambda: self.lose_replies),
        ):
            self._tasks.add(asyncio.create_task(task))

    @staticmethod
    async def _pipe(source, sink, dropping) -> None:
        while data := await source.read(65536):
            if not dropping():
                sink.write(data)
                await sink.drain()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.server.close()


async def test_an_announce_whose_reply_is_lost_gives_up_after_its_timeout(monkeypatch):
    monkeypatch.setattr(live, "ANNOUNCE_TIMEOUT_S", 0.2)
    proxy = ReplyLosingProxy()
    port = await proxy.start()
    db = int(urlparse(settings.REDIS_URL).path.strip("/") or 0)
    client = aioredis.Redis(host="127.0.0.1", port=port, db=db, socket_timeout=30)
    direct = live.redis_client()
    room = "fr:room:987001:events"
    try:
        await client.ping()  # connected through the proxy, replies flowing
        proxy.lose_replies = True
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await live.announce(client, room, {"type": "run.done", "run": 1})
        assert time.monotonic() - started < 2
        # The command reached Redis; only its reply was lost.
        ((_, event),) = await live.events_since(direct, room, "-")
        assert event == {"type": "run.done", "run": 1}
    finally:
        await direct.delete(room)
        await direct.aclose()
        await client.aclose()
        await proxy.close()

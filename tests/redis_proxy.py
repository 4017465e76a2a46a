"""A TCP proxy in front of the test Redis, to make its network misbehave on purpose:
replies held back by a fixed delay (a distant Redis: each round trip then costs the
delay, so round trips can be counted by the clock), or dropped altogether (a
half-open connection)."""

import asyncio
import contextlib
from urllib.parse import urlparse

import redis.asyncio as aioredis
from django.conf import settings


class RedisProxy:
    def __init__(self, reply_delay: float = 0.0):
        self.reply_delay = reply_delay
        self.lose_replies = False
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> "RedisProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    def client(self, **options) -> aioredis.Redis:
        """A client of the test Redis database, through this proxy."""
        port = self.server.sockets[0].getsockname()[1]
        db = int(urlparse(settings.REDIS_URL).path.strip("/") or 0)
        return aioredis.Redis(host="127.0.0.1", port=port, db=db, **options)

    async def _serve(self, client_in, client_out) -> None:
        target = urlparse(settings.REDIS_URL)
        redis_in, redis_out = await asyncio.open_connection(target.hostname, target.port or 6379)
        for task in (self._commands(client_in, redis_out), self._replies(redis_in, client_out)):
            self._tasks.add(asyncio.create_task(task))

    @staticmethod
    async def _commands(source, sink) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()

    async def _replies(self, source, sink) -> None:
        while data := await source.read(65536):
            if self.lose_replies:
                continue
            if self.reply_delay:
                # Each reply leaves `reply_delay` after it came, in order, as over
                # a long wire (not one after another: that would add up).
                self._tasks.add(asyncio.create_task(self._later(sink, data)))
            else:
                sink.write(data)
                await sink.drain()

    async def _later(self, sink, data: bytes) -> None:
        await asyncio.sleep(self.reply_delay)
        sink.write(data)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.server.close()

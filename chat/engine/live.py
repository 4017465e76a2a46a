"""Live answer text in Redis, the coalescer that batches it, and the events that
announce it.

While an answer streams, its text so far and the sequence number of its last
delta live in Redis; every delta is appended there *before* it is announced on
the channel layer. A browser that (re)connects joins the room's group first and
reads the snapshot second, so nothing falls between the two: deltas it already
has in the snapshot carry a sequence number it drops, later ones it appends.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import redis
import redis.asyncio as aioredis
from django.conf import settings

LIVE_TTL_S = 3600


def text_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:text"


def _seq_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:seq"


def sync_redis() -> redis.Redis:
    """A short-lived synchronous client, for views, tasks and commands (close it)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def redis_client(max_connections: int = 50) -> aioredis.Redis:
    """A redis.asyncio client for the running event loop. The pool blocks (briefly)
    instead of failing when hundreds of streams of one run want Redis at once."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=max_connections,
        timeout=20,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=settings.REDIS_RETRY,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it


async def append(redis, answer_id: int, text: str) -> int:
    """Append streamed text; returns the delta's sequence number (1, 2, …).
    The string grows to at most the answer's cap: the call passes on no more text
    (panels.calls.AnswerCap)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.append(text_key(answer_id), text)
        pipe.incr(_seq_key(answer_id))
        pipe.expire(text_key(answer_id), LIVE_TTL_S)
        pipe.expire(_seq_key(answer_id), LIVE_TTL_S)
        _, seq, _, _ = await pipe.execute()
    return int(seq)


async def rewrite(redis, answer_id: int, text: str, seq: int) -> None:
    """Put back a live copy that Redis lost (it restarted empty, or a flush failed
    half-way): the whole text so far, at sequence number `seq`."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(text_key(answer_id), text, ex=LIVE_TTL_S)
        pipe.set(_seq_key(answer_id), seq, ex=LIVE_TTL_S)
        await pipe.execute()


async def live_state(redis, answer_id: int) -> tuple[str, int]:
    """(text so far, last sequence number) of a streaming answer."""
    text, seq = await redis.mget(text_key(answer_id), _seq_key(answer_id))
    return (text or b"").decode("utf-8", "replace"), int(seq or 0)


# channels_redis' group_send can wait forever on a Redis reply that never comes
# (django/channels_redis#361; seen here: a finished run whose last event never left,
# holding its task). An event is worth seconds, never the run: a late one is dropped
# (and logged by the caller); the room recovers it from the snapshot.
ANNOUNCE_TIMEOUT_S = 5.0


async def announce(channel_layer, group: str, event: Mapping) -> None:
    """Send one event to every tab showing the room. Consumers forward it as is."""
    async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
        await channel_layer.group_send(group, {"type": "room.event", "event": event})


# --- coalescing ------------------------------------------------------------------
# A model emits one token per chunk; forwarding each as its own websocket frame
# costs a Redis round trip apiece. The coalescer forwards the first text at once,
# then at most one flush per interval with everything that arrived meanwhile.


class Coalescer:
    def __init__(self, flush: Callable[[str], Awaitable[None]], interval: float = 0.05):
        self._flush = flush
        self._interval = interval
        self._buffer: list[str] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def push(self, text: str) -> None:
        self._buffer.append(text)
        self._wake.set()

    async def close(self) -> None:
        """Flush what is buffered and stop."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._buffer:
                text = "".join(self._buffer)
                self._buffer.clear()
                await self._flush(text)
            if self._closing.is_set() and not self._buffer:
                return
            # Let text gather for one interval; closing cuts the wait short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._interval)

"""Live answer text in Redis, the room's event stream, and the coalescer that
batches text into it.

Every event of a room goes into one Redis Stream, `fr:room:<conversation>:events`
(XADD, trimmed to about ROOM_EVENTS_MAXLEN entries). A flush of streamed text is one
MULTI/EXEC, so one round trip: it appends the text to the answer's live copy (what a
snapshot shows), counts its sequence number and adds the delta to the stream. Each
Daphne process reads the streams of the rooms its sockets show (chat/room_feed.py);
a socket that reconnects names the last stream id it had and is sent what came after
it, with no snapshot and so no race between a snapshot and the events around it.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping

import redis
import redis.asyncio as aioredis
from django.conf import settings

LIVE_TTL_S = 3600
# Entries kept per room: a busy room (five answers streaming, a flush each 50 ms)
# adds ~100 a second, so a browser away for ~20 s still resumes from its last id;
# away longer, it is sent a snapshot. Trimming is approximate (MAXLEN ~): cheap.
ROOM_EVENTS_MAXLEN = 2000
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")  # what a resume id must look like


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


def _add_event(pipe, room: str, event: Mapping) -> None:
    pipe.xadd(room, {"e": json.dumps(event)}, maxlen=ROOM_EVENTS_MAXLEN, approximate=True)
    pipe.expire(room, LIVE_TTL_S)


async def append(redis, room: str, delta: Mapping) -> int:
    """Store one flush of streamed text and add its delta event to the room's stream,
    in one round trip; returns the live copy's sequence number after it (1, 2, …),
    which differs from the delta's when Redis lost the copy (see `rewrite`).
    The string grows to at most the answer's cap: the call passes on no more text
    (panels.calls.AnswerCap)."""
    answer_id = delta["answer"]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.append(text_key(answer_id), delta["text"])
        pipe.incr(_seq_key(answer_id))
        pipe.expire(text_key(answer_id), LIVE_TTL_S)
        pipe.expire(_seq_key(answer_id), LIVE_TTL_S)
        _add_event(pipe, room, delta)
        replies = await pipe.execute()
    return int(replies[1])


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


# A Redis reply that never comes (a half-open connection) must not hold a run: an
# event is worth seconds, never the run. A late one is dropped (and logged by the
# caller); the room recovers it from a snapshot.
ANNOUNCE_TIMEOUT_S = 5.0


async def announce(redis, room: str, event: Mapping) -> None:
    """Add one event to the room's stream, for every tab showing the room."""
    async with asyncio.timeout(ANNOUNCE_TIMEOUT_S), redis.pipeline(transaction=False) as pipe:
        _add_event(pipe, room, event)
        await pipe.execute()


def announce_sync(client: redis.Redis, room: str, event: Mapping) -> None:
    """`announce` for synchronous code (a run closed by the sweeper)."""
    with client.pipeline(transaction=False) as pipe:
        _add_event(pipe, room, event)
        pipe.execute()


Entry = tuple[str, dict]  # (stream id, event)


def _entries(raw) -> list[Entry]:
    return [(_text(entry_id), json.loads(fields[b"e"])) for entry_id, fields in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream id as something that sorts like it ("12-3" < "12-10")."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def last_event_id(redis, room: str) -> str:
    """The id of the room's newest event ("0-0" when it has none kept)."""
    newest = await redis.xrevrange(room, count=1)
    return _text(newest[0][0]) if newest else "0-0"


async def events_since(redis, room: str, since: str, until: str = "+") -> list[Entry]:
    """The room's events from id `since` (included) to `until`."""
    return _entries(await redis.xrange(room, min=since, max=until))


async def holds(redis, room: str, entry_id: str) -> bool:
    """Whether the room's stream still holds the event `entry_id`. When it does, it
    holds every event after it too (trimming takes the oldest first); when it does
    not (trimmed, expired, or Redis restarted empty), something after it may be gone,
    and only a snapshot makes a browser whole."""
    return bool(await redis.xrange(room, min=entry_id, max=entry_id, count=1))


async def read_events(redis, cursors: Mapping[str, str], block_ms: int) -> dict[str, list[Entry]]:
    """XREAD BLOCK: the events after each stream's cursor, by stream key; waits up to
    `block_ms` for the first one."""
    replies = await redis.xread(dict(cursors), block=block_ms)
    return {_text(key): _entries(raw) for key, raw in replies or []}


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

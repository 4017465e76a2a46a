"""Live answer text in Redis, the conversation's event stream, and the coalescer that
batches text into it.

Every event of a conversation goes into one Redis Stream, `fr:conversation:<conversation>:events`
(XADD, trimmed to about CONVERSATION_EVENTS_MAXLEN entries). A flush of streamed text is one
MULTI/EXEC, so one round trip: it appends the text to the answer's live copy (what a
snapshot shows), counts its sequence number and adds the delta to the stream. Each
Daphne process reads the streams of the conversations its sockets show (chat/conversation_feed.py);
a socket that reconnects names the last stream id it had and is sent what came after
it, with no snapshot and so no race between a snapshot and the events around it.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

import redis
import redis.asyncio as aioredis
from django.conf import settings

LIVE_TTL_S = 3600
# Entries kept per conversation: a busy conversation (five answers streaming, a flush each 50 ms)
# adds ~100 a second, so a browser away for ~20 s still resumes from its last id;
# away longer, it is sent a snapshot. Trimming is approximate (MAXLEN ~): cheap.
CONVERSATION_EVENTS_MAXLEN = 2000
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")  # what a resume id must look like


def text_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:text"


def _seq_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:seq"


def _tools_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:tools"  # call id → its tool.started event, while it runs


def sync_redis() -> redis.Redis:
    """A short-lived synchronous client, for views, tasks and commands (close it)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


_shared_sync: redis.Redis | None = None


def shared_sync_redis() -> redis.Redis:
    """The process's synchronous client, for what every request does (counting its
    rate): a fresh client a request opened a connection each time. Never close it.
    Its pool is thread-safe, and a command on a connection Redis closed (a restart)
    is tried again on a fresh one (redis-py's default retries)."""
    global _shared_sync
    if _shared_sync is None:
        _shared_sync = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    return _shared_sync


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


def _add_event(pipe, stream: str, event: Mapping) -> None:
    pipe.xadd(stream, {"e": json.dumps(event)}, maxlen=CONVERSATION_EVENTS_MAXLEN, approximate=True)
    pipe.expire(stream, LIVE_TTL_S)


async def append(redis, stream: str, delta: Mapping) -> int:
    """Store one flush of streamed text and add its delta event to the conversation's stream,
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
        _add_event(pipe, stream, delta)
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
    return _state(*await redis.mget(text_key(answer_id), _seq_key(answer_id)))


def _state(text: bytes | None, seq: bytes | None) -> tuple[str, int]:
    return (text or b"").decode("utf-8", "replace"), int(seq or 0)


# A Redis reply that never comes (a half-open connection) must not hold a run: an
# event is worth seconds, never the run. A late one is dropped (and logged by the
# caller); the conversation recovers it from a snapshot.
ANNOUNCE_TIMEOUT_S = 5.0


async def announce(redis, stream: str, event: Mapping) -> None:
    """Add one event to the conversation's stream, for every tab showing the conversation.
    A tool call's start and end also keep the answer's running calls, in the same round
    trip: a page drawn again while a tool runs (a new stage, a reload) shows its row."""
    await announce_all(redis, stream, [event])


async def announce_all(redis, stream: str, events: Sequence[Mapping]) -> None:
    """`announce` for several events, in their order, in one round trip (a stage
    entered and its call's row shown: nothing but this between one stage's last byte
    and the next one's request)."""
    async with asyncio.timeout(ANNOUNCE_TIMEOUT_S), redis.pipeline(transaction=False) as pipe:
        for event in events:
            _add_event(pipe, stream, event)
            if event.get("type") == "tool.started":
                pipe.hset(_tools_key(event["answer"]), event["id"], json.dumps(event))
                pipe.expire(_tools_key(event["answer"]), LIVE_TTL_S)
            elif event.get("type") == "tool.done":
                pipe.hdel(_tools_key(event["answer"]), event["step"]["id"])
        await pipe.execute()


async def snapshot_state(redis, answer_id: int) -> tuple[str, int, list[dict]]:
    """`live_state` and the tool.started events of the answer's calls that have not
    ended (by call id), in one round trip: what a snapshot shows of a live answer."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget(text_key(answer_id), _seq_key(answer_id))
        pipe.hvals(_tools_key(answer_id))
        (text, seq), running = await pipe.execute()
    started = sorted((json.loads(raw) for raw in running), key=lambda event: event["id"])
    return *_state(text, seq), started


def announce_sync(client: redis.Redis, stream: str, event: Mapping) -> None:
    """`announce` for synchronous code (a run closed by the sweeper)."""
    with client.pipeline(transaction=False) as pipe:
        _add_event(pipe, stream, event)
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


async def last_event_id(redis, stream: str) -> str:
    """The id of the conversation's newest event ("0-0" when it has none kept)."""
    newest = await redis.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


async def events_since(redis, stream: str, since: str, until: str = "+") -> list[Entry]:
    """The conversation's events from id `since` (included) to `until`."""
    return _entries(await redis.xrange(stream, min=since, max=until))


async def holds(redis, stream: str, entry_id: str) -> bool:
    """Whether the conversation's stream still holds the event `entry_id`. When it does, it
    holds every event after it too (trimming takes the oldest first); when it does
    not (trimmed, expired, or Redis restarted empty), something after it may be gone,
    and only a snapshot makes a browser whole."""
    return bool(await redis.xrange(stream, min=entry_id, max=entry_id, count=1))


async def read_events(redis, cursors: Mapping[str, str], block_ms: int) -> dict[str, list[Entry]]:
    """XREAD BLOCK: the events after each stream's cursor, by stream key; waits up to
    `block_ms` for the first one."""
    replies = await redis.xread(dict(cursors), block=block_ms)
    # redis-py can absorb a cancellation that lands as a blocking read's reply comes
    # in (redis/redis-py#2028): the read returns as if never cancelled. An API stream
    # whose client hung up then read on, and its run went unstopped until Daphne
    # killed the request 10 s later; a room's feed would outlive its socket the same
    # way. A cancellation asked for meanwhile is raised here, where it was due.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
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

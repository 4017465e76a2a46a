"""Live answer text in Redis, and the events that announce it.

While an answer streams, its text so far and the sequence number of its last
delta live in Redis; every delta is appended there *before* it is announced on
the channel layer. A browser that (re)connects joins the room's group first and
reads the snapshot second, so nothing falls between the two: deltas it already
has in the snapshot carry a sequence number it drops, later ones it appends.
"""

import redis.asyncio as aioredis
from django.conf import settings

LIVE_TTL_S = 3600


def text_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:text"


def _seq_key(answer_id: int) -> str:
    return f"fr:answer:{answer_id}:seq"


def redis_client(max_connections: int = 50):
    """A redis.asyncio client for the running event loop. The pool blocks (briefly)
    instead of failing when hundreds of streams of one run want Redis at once."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=max_connections,
        timeout=20,
        socket_connect_timeout=2,
        socket_timeout=10,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it


async def append(redis, answer_id: int, text: str) -> int:
    """Append streamed text; returns the delta's sequence number (1, 2, …)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.append(text_key(answer_id), text)
        pipe.incr(_seq_key(answer_id))
        pipe.expire(text_key(answer_id), LIVE_TTL_S)
        pipe.expire(_seq_key(answer_id), LIVE_TTL_S)
        _, seq, _, _ = await pipe.execute()
    return int(seq)


async def live_state(redis, answer_id: int) -> tuple[str, int]:
    """(text so far, last sequence number) of a streaming answer."""
    text, seq = await redis.mget(text_key(answer_id), _seq_key(answer_id))
    return (text or b"").decode("utf-8", "replace"), int(seq or 0)


async def announce(channel_layer, group: str, event: dict) -> None:
    """Send one event to every tab showing the room. Consumers forward it as is."""
    await channel_layer.group_send(group, {"type": "room.event", "event": event})

"""The conversations' events for one Daphne process: one reader, however many sockets.

Workers add every event of a conversation to its Redis Stream (chat/engine/live.py). Here
one task per process XREADs (BLOCK) the streams of the conversations this process's sockets
show and hands each event to those sockets in memory, so Redis sees one blocked
read per process instead of a channel per socket, and a flush reaches every tab
with one round trip of the worker's and one read of each Daphne's.

Each subscription knows the stream id of the last event it was given. A socket that
joins a conversation the reader already follows is given the reader's events after its
cursor, and reads (XRANGE) what lies between its own start and that cursor itself:
nothing falls between the two, and nothing is given twice.
"""

import asyncio
import logging
import secrets
from collections import deque

from .engine import live

log = logging.getLogger(__name__)

BLOCK_MS = 5000  # below the Redis client's socket timeout (10 s)
RETRY_S = 0.5  # after a failed read (Redis restarting): wait, then read again
# Events held for one socket that is not reading them (a stalled browser): past
# this the socket is closed, and the browser resumes from its last id.
PENDING_LIMIT = 5000


class Subscription:
    """One socket's place in a conversation's stream, and the events waiting for it."""

    def __init__(self, stream: str, since: str, last: str | None = None):
        self.stream = stream
        self.since = since  # it is given every event after this id
        self.last = last or since  # id of the last event put here
        self.pending: deque[live.Entry] = deque()
        self.ready = asyncio.Event()  # something to send, or to do
        self.overflowed = False  # events were dropped: this socket must reconnect
        self.lost = False  # the reader lost Redis: events may be missing

    def put(self, entry_id: str, event: dict) -> None:
        if live.id_order(entry_id) <= live.id_order(self.last) or self.overflowed:
            return  # already given (a catch-up overlapping the reader)
        if len(self.pending) >= PENDING_LIMIT:
            self.overflowed = True
        else:
            self.pending.append((entry_id, event))
            self.last = entry_id
        self.ready.set()

    def mark_lost(self) -> None:
        self.lost = True
        self.ready.set()


class ConversationFeed:
    """The one reader of a process (of its event loop): see the module's docstring."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.redis = live.redis_client()
        self.streams: dict[str, set[Subscription]] = {}
        self.cursors: dict[str, str] = {}  # conversation -> id of the last event read
        # Adding to this stream wakes a blocked read, to read a new conversation's stream too.
        self._wake_key = f"fr:feed:{secrets.token_hex(8)}:wake"
        self._wake_cursor = "0-0"
        self._reader: asyncio.Task | None = None

    async def subscribe(self, stream: str, after: str | None) -> tuple[Subscription, bool]:
        """Follow `conversation` from the event after `after` (a browser resuming), or from
        now. Returns the subscription, and whether it resumed: when it did not, the
        socket sends a snapshot, taken after this returns."""
        resumed = bool(after) and await live.holds(self.redis, stream, after)  # type: ignore[arg-type]
        since = after if resumed else await live.last_event_id(self.redis, stream)
        return await self._join(stream, since), resumed  # type: ignore[arg-type]

    async def _join(self, stream: str, since: str) -> Subscription:
        """A subscription given every event after `since`, each once, in order."""
        cursor = self.cursors.get(stream)
        if cursor is None:  # a conversation new to this process: the reader starts at `since`
            subscription = Subscription(stream, since)
            self.cursors[stream], self.streams[stream] = since, {subscription}
            await self._wake()
            return subscription
        # The reader gives what comes after its cursor; what lies between `since` and
        # the cursor is read here. (The reader's read in flight, if any, started at
        # the cursor: it holds nothing at or before it.)
        subscription = Subscription(stream, since, max(since, cursor, key=live.id_order))
        self.streams[stream].add(subscription)
        if live.id_order(since) < live.id_order(cursor):
            between = await live.events_since(self.redis, stream, f"({since}", cursor)
            subscription.pending.extendleft(reversed(between))
            subscription.ready.set()
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        watching = self.streams.get(subscription.stream)
        if watching is None:
            return
        watching.discard(subscription)
        if not watching:
            del self.streams[subscription.stream], self.cursors[subscription.stream]
            if not self.streams:
                await self._wake()  # the reader ends: no conversation left to read

    async def _wake(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"e": "null"}, maxlen=1)
                pipe.expire(self._wake_key, 60)
                await pipe.execute()
        except Exception as exc:  # the reader's next read (≤ BLOCK_MS) sees the conversation
            log.warning("could not wake the conversation feed's reader: %r", exc)

    async def _read(self) -> None:
        failed = False
        while self.streams:
            cursors = {self._wake_key: self._wake_cursor, **self.cursors}
            try:
                read = await live.read_events(self.redis, cursors, BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis went away. Reading from the same cursors once it is back
                # misses nothing it kept; what it lost, a snapshot restores.
                log.warning("conversation feed: reading the conversations' streams failed: %r", exc)
                failed = True
                await asyncio.sleep(RETRY_S)
                continue
            if failed:  # Redis is back: each socket reads a snapshot, now it can
                failed = False
                for subscriptions in self.streams.values():
                    for subscription in subscriptions:
                        subscription.mark_lost()
            for stream, entries in read.items():
                if stream == self._wake_key:
                    self._wake_cursor = entries[-1][0]
                    continue
                watching = self.streams.get(stream)
                if not watching or not entries:
                    continue
                for entry_id, event in entries:
                    for subscription in watching:
                        subscription.put(entry_id, event)
                if live.id_order(entries[-1][0]) > live.id_order(self.cursors[stream]):
                    self.cursors[stream] = entries[-1][0]


_feeds: dict[asyncio.AbstractEventLoop, ConversationFeed] = {}


def conversation_feed() -> ConversationFeed:
    """This process's feed (one per event loop: Daphne runs one; tests run several)."""
    loop = asyncio.get_running_loop()
    for old in [other for other in _feeds if other.is_closed()]:
        del _feeds[old]
    if loop not in _feeds:
        _feeds[loop] = ConversationFeed()
    return _feeds[loop]

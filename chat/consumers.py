"""The conversation websocket: a read-only feed of a conversation's runs.

Messages are sent over HTTP (one code path for browsers with and without
JavaScript); this socket only delivers events. Each event carries `event_id`, its
id in the conversation's Redis Stream. A browser connecting afresh is sent a snapshot, then
the events after it; one reconnecting names the last id it had (`?after=<id>`) and
is sent a `resumed` message and every event after that id, with no snapshot, unless
the stream no longer holds it (then a snapshot, as for a fresh one). A browser that
notices a gap in an answer's sequence numbers asks for a snapshot ("resync").
"""

import asyncio
import contextlib
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .conversation_feed import ConversationFeed, Subscription, conversation_feed
from .engine import live
from .engine.events import conversation_snapshot
from .models import Conversation

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_SNAPSHOT_FAILED = 1011  # "internal error": the browser reconnects, and is whole
CLOSE_TOO_SLOW = 1013  # "try again later": events piled up unread; it resumes from its id

# A snapshot reads the database and every live answer's text in Redis. A browser
# that lost a frame needs one; a socket that asks in a loop gets at most one a
# second: requests within the second are answered together, by one snapshot read
# when the second is over, so it holds everything that happened meanwhile.
SNAPSHOT_INTERVAL_S = 1.0


def resume_id(scope) -> str | None:
    """The stream id a reconnecting browser last had, when it names a valid one."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    after = (query.get("after") or [""])[0]
    return after if live.STREAM_ID.fullmatch(after) else None


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    feed: ConversationFeed | None = None
    subscription: Subscription | None = None
    _forwarder: asyncio.Task | None = None
    _last_snapshot = float("-inf")  # loop time of the last snapshot sent
    _next_snapshot: asyncio.Task | None = None  # one delayed snapshot, already promised

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation = await self._conversation(user, self.scope["url_route"]["kwargs"]["pk"])
        if conversation is None:
            # Someone else's conversation and a missing conversation look the same from outside.
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.conversation_id = conversation.pk
        self.feed = conversation_feed()
        self.redis = self.feed.redis
        await self.accept()
        after = resume_id(self.scope)
        try:
            # Subscribe first, snapshot second: events from the subscription's start
            # wait in it while the snapshot is read, and are sent after it.
            self.subscription, resumed = await self.feed.subscribe(conversation.events_key, after)
            if resumed:
                await self.send_json({"type": "resumed", "after": after})
            else:
                await self._send_snapshot(event_id=self.subscription.since)
        except Exception:
            log.exception("could not open the feed of conversation %s", self.conversation_id)
            await self.close(code=CLOSE_SNAPSHOT_FAILED)
            return
        self._forwarder = asyncio.create_task(self._forward(self.subscription))

    async def disconnect(self, code):
        for task in (self._next_snapshot, self._forwarder):
            if task is not None:
                task.cancel()
        if self.feed is not None and self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.feed.unsubscribe(self.subscription)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "resync":
            await self._resync()
        else:
            await self.send_json({"type": "error", "error": "Unknown request."})

    async def _forward(self, subscription: Subscription) -> None:
        """Send the conversation's events to this socket as the process's reader hands them
        over, each with its stream id."""
        try:
            while True:
                await subscription.ready.wait()
                subscription.ready.clear()
                if subscription.overflowed:
                    await self.close(code=CLOSE_TOO_SLOW)
                    return
                if subscription.lost:  # the reader lost Redis: events may be missing
                    subscription.lost = False
                    await self._resync()
                while subscription.pending:
                    entry_id, event = subscription.pending.popleft()
                    await self.send_json({**event, "event_id": entry_id})
        except Exception:
            # Nobody awaits this task: close, and the browser's reconnect (a resume
            # or a snapshot) makes it whole. A socket left open without its feed
            # would go quiet for ever.
            log.exception("could not forward the events of conversation %s", self.conversation_id)
            await self.close(code=CLOSE_SNAPSHOT_FAILED)

    async def _resync(self) -> None:
        if self._next_snapshot is not None:
            return  # a snapshot is already coming, and will be read when it is sent
        wait = self._last_snapshot + SNAPSHOT_INTERVAL_S - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._send_snapshot()
        else:
            self._next_snapshot = asyncio.create_task(self._snapshot_after(wait))

    async def _snapshot_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        try:
            await self._send_snapshot()
        except Exception:
            # Nobody awaits this task: close, and the browser's reconnect (which
            # reads a snapshot of its own) makes it whole.
            log.exception("could not send a snapshot of conversation %s", self.conversation_id)
            await self.close(code=CLOSE_SNAPSHOT_FAILED)
        finally:
            self._next_snapshot = None

    async def _send_snapshot(self, event_id: str | None = None) -> None:
        """A snapshot; on connect it carries the stream id it is taken after, where
        the browser resumes if this socket drops before any event comes."""
        self._last_snapshot = asyncio.get_running_loop().time()
        snapshot = await conversation_snapshot(self.redis, self.conversation_id)
        if event_id is not None:
            snapshot["event_id"] = event_id
        await self.send_json(snapshot)

    @database_sync_to_async
    def _conversation(self, user, pk) -> Conversation | None:
        return Conversation.objects.filter(owner=user, pk=pk).first()

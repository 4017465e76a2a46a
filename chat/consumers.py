"""The room websocket: a read-only feed of a conversation's runs.

Messages are sent over HTTP (one code path for browsers with and without
JavaScript); this socket only delivers events, after a snapshot, and answers a
"resync" request when the browser detects a gap in sequence numbers.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .engine import live
from .engine.events import room_snapshot
from .models import Conversation

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_SNAPSHOT_FAILED = 1011  # "internal error": the browser reconnects, and is whole

# A snapshot reads the database and every live answer's text in Redis. A browser
# that lost a frame needs one; a socket that asks in a loop gets at most one a
# second: requests within the second are answered together, by one snapshot read
# when the second is over, so it holds everything that happened meanwhile.
SNAPSHOT_INTERVAL_S = 1.0


class RoomConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    redis = None
    _last_snapshot = float("-inf")  # loop time of the last snapshot sent
    _next_snapshot: asyncio.Task | None = None  # one delayed snapshot, already promised

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation = await self._conversation(user, self.scope["url_route"]["kwargs"]["pk"])
        if conversation is None:
            # Someone else's room and a missing room look the same from outside.
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.conversation_id = conversation.pk
        self.group = conversation.group_name
        self.redis = live.redis_client()
        # Join first, snapshot second: no event can fall between the two.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_snapshot()

    async def disconnect(self, code):
        if self._next_snapshot is not None:
            self._next_snapshot.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.redis is not None:
            await self.redis.aclose()

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "resync":
            await self._resync()
        else:
            await self.send_json({"type": "error", "error": "Unknown request."})

    async def room_event(self, message):
        await self.send_json(message["event"])

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
            log.exception("could not send a snapshot of room %s", self.conversation_id)
            await self.close(code=CLOSE_SNAPSHOT_FAILED)
        finally:
            self._next_snapshot = None

    async def _send_snapshot(self) -> None:
        self._last_snapshot = asyncio.get_running_loop().time()
        await self.send_json(await room_snapshot(self.redis, self.conversation_id))

    @database_sync_to_async
    def _conversation(self, user, pk) -> Conversation | None:
        return Conversation.objects.filter(owner=user, pk=pk).first()

"""The room websocket: a read-only feed of a conversation's runs.

Messages are sent over HTTP (one code path for browsers with and without
JavaScript); this socket only delivers events, after a snapshot, and answers a
"resync" request when the browser detects a gap in sequence numbers.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .engine import live
from .engine.events import room_snapshot
from .models import Conversation

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class RoomConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    redis = None

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
        await self.send_json(await room_snapshot(self.redis, self.conversation_id))

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.redis is not None:
            await self.redis.aclose()

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "resync":
            await self.send_json(await room_snapshot(self.redis, self.conversation_id))
        else:
            await self.send_json({"type": "error", "error": "Unknown request."})

    async def room_event(self, message):
        await self.send_json(message["event"])

    @database_sync_to_async
    def _conversation(self, user, pk) -> Conversation | None:
        return Conversation.objects.filter(owner=user, pk=pk).first()

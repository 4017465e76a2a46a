"""MCP over streamable HTTP at /mcp, inside the app, authenticated with an API key.

The SDK's Starlette app expects an ASGI lifespan to start its session manager;
Daphne sends none, so the first request starts it and keeps it for the process.
"""

import asyncio
import json

from channels.db import database_sync_to_async
from django.conf import settings
from mcp.server.transport_security import TransportSecuritySettings

from . import auth
from .mcp_server import server


def _key_user(header: str) -> int | auth.Refused:
    try:
        return auth.caller(header).user_id
    except auth.Refused as refused:
        return refused


class McpHttpApp:
    def __init__(self):
        hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]
        self.app = server.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection="*" not in settings.ALLOWED_HOSTS,
                allowed_hosts=[*hosts, *(f"{h}:*" for h in hosts)],
                allowed_origins=[f"http://{h}:*" for h in hosts] + [f"https://{h}" for h in hosts],
            ),
        )
        self._started: asyncio.Future | None = None

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            asyncio.ensure_future(self._hold())
        await self._started

    async def _hold(self) -> None:
        async with self.app.router.lifespan_context(self.app):
            assert self._started is not None  # set by _start before this task runs
            self._started.set_result(True)
            await asyncio.Event().wait()  # for the life of the process

    async def __call__(self, scope, receive, send):
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        user_id = await database_sync_to_async(_key_user)(headers.get("authorization", ""))
        if isinstance(user_id, auth.Refused):
            body = json.dumps({"error": user_id.message, "code": user_id.code})
            extra = [(k.lower().encode(), v.encode()) for k, v in user_id.headers.items()]
            await send(
                {
                    "type": "http.response.start",
                    "status": user_id.status,
                    "headers": [(b"content-type", b"application/json"), *extra],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self._start()
        scope = {**scope, "state": {**scope.get("state", {}), "fusion_user_id": user_id}}
        await self.app(scope, receive, send)

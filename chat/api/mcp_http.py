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


def _key_of(header: str) -> tuple[int, int] | auth.Refused:
    """(user id, key id) of an accepted request, counted against its owner's rate."""
    try:
        record = auth.caller(header)
    except auth.Refused as refused:
        return refused
    return record.user_id, record.pk


async def _refuse(send, status: int, message: str, code: str, headers: dict | None = None):
    body = json.dumps({"error": message, "code": code})
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None past `limit` bytes, whatever Content-Length
    said (a chunked body has none). Read before the SDK sees the request: an error
    raised from inside it would become a 500."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the client went away; the SDK will notice
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive):
    """A `receive` that hands the body over once, then listens for a disconnect."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again():
        return pending.pop() if pending else await receive()

    return receive_again


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
        limit = settings.API_MAX_BODY_BYTES
        length = headers.get("content-length", "0")
        if length.isdigit() and int(length) > limit:
            await _refuse(
                send, 413, f"The body is over {limit:,} bytes, the limit.", "request_too_large"
            )
            return
        found = await database_sync_to_async(_key_of)(headers.get("authorization", ""))
        if isinstance(found, auth.Refused):
            await _refuse(send, found.status, found.message, found.code, found.headers)
            return
        body = await _read_body(receive, limit)
        if body is None:
            await _refuse(
                send, 413, f"The body is over {limit:,} bytes, the limit.", "request_too_large"
            )
            return
        await self._start()
        user_id, key_id = found
        state = {**scope.get("state", {}), "fusion_user_id": user_id, "fusion_key_id": key_id}
        await self.app({**scope, "state": state}, _replay(body, receive), send)

"""ASGI entry point: HTTP to Django, websockets to Channels consumers.

Websockets pass the allowed-hosts origin check and Django's session auth; the
consumers themselves refuse anonymous users and conversations they do not own.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")

# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.api.mcp_http import McpHttpApp  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

mcp_app = McpHttpApp()


async def http_app(scope, receive, send):
    """/mcp is the MCP server (streamable HTTP); everything else is Django."""
    path = scope.get("path", "")
    if path == "/mcp" or path.startswith("/mcp/"):
        return await mcp_app(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

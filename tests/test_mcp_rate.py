"""Stdio MCP meets the same requests-a-minute limit as the API and /mcp: the server
acts for the owner of FUSIONROOM_API_KEY, and the limit is that owner's, over all
their keys. Called in process here; tests/test_mcp.py drives the stdio server."""

import pytest
import redis
from django.conf import settings
from mcp.server.mcpserver.exceptions import ToolError

from chat.api import mcp_server
from chat.api.keys import create_key

pytestmark = pytest.mark.django_db


def ratelimit_key(user) -> str:
    return f"fr:ratelimit:user:{user.pk}"


@pytest.fixture
def counter(redis_ready):
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def test_each_stdio_tool_call_counts_and_the_one_over_the_limit_is_refused(
    alice, monkeypatch, settings, counter
):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    monkeypatch.setenv("FUSIONROOM_API_KEY", create_key(alice, "mcp")[1])
    counter.delete(ratelimit_key(alice))
    for _ in range(2):
        assert mcp_server._caller_of(None)[0] == alice
    with pytest.raises(ToolError, match="Rate limit of 2 requests a minute reached"):
        mcp_server._caller_of(None)
    assert int(counter.get(ratelimit_key(alice))) == 3  # the refused call counted too


def test_the_limit_is_the_owners_whichever_key_the_stdio_server_holds(
    alice, monkeypatch, settings, counter
):
    """Requests made with another of the owner's keys (the API's) use up the same minute."""
    settings.API_RATE_LIMIT_PER_MINUTE = 5
    counter.set(ratelimit_key(alice), 5, ex=30)  # five API requests this minute
    monkeypatch.setenv("FUSIONROOM_API_KEY", create_key(alice, "stdio")[1])
    with pytest.raises(ToolError, match="Rate limit"):
        mcp_server._caller_of(None)

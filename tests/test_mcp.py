"""Fusion as a tool: the official MCP client starts `manage.py mcp` over stdio,
lists its tools and calls `fusion` (answered by the live worker)."""

import sys

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from chat.api.keys import create_key
from tests.conftest import ROOT, child_env, database_url
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def test_the_mcp_server_lists_tools_and_answers(live_stack):
    kit = ScriptedPanel(seats=2)
    try:
        for server in kit.seats:
            server.default = Reply.stream(["Canberra."])
        kit.judge.default = analysis_reply()
        kit.synthesizer.default = Reply.stream(["The capital ", "is Canberra."])
        key = create_key(kit.user, "mcp")[1]
        params = StdioServerParameters(
            command=sys.executable,
            args=["manage.py", "mcp"],
            cwd=str(ROOT),
            env=child_env(
                DATABASE_URL=database_url(connection.settings_dict), FUSIONROOM_API_KEY=key
            ),
        )

        async def session():
            async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {tool.name for tool in (await mcp.list_tools()).tools}
                panels = await mcp.call_tool("list_panels", {})
                answer = await mcp.call_tool(
                    "fusion", {"question": "Capital of Australia?", "panel": kit.panel.slug}
                )
                missing = await mcp.call_tool("fusion", {"question": "hi", "panel": "nope"})
                return tools, panels, answer, missing

        tools, panels, answer, missing = async_to_sync(session)()
        assert tools == {"fusion", "list_panels"}
        assert kit.panel.slug in str(panels.content)
        text = answer.content[0].text
        assert not answer.is_error and text.startswith("The capital is Canberra.")
        assert "fused from Seat-0, Seat-1" in text
        assert missing.is_error and "No panel 'nope'" in missing.content[0].text
    finally:
        kit.close()


def test_mcp_over_streamable_http_in_the_app(live_stack):
    import httpx
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    kit = ScriptedPanel(seats=2)
    try:
        for server in kit.seats:
            server.default = Reply.stream(["Canberra."])
        kit.judge.default = analysis_reply()
        kit.synthesizer.default = Reply.stream(["Canberra, by HTTP."])
        key = create_key(kit.user, "mcp-http")[1]
        assert httpx.post(f"{live_stack.url}/mcp", json={}).status_code == 401

        async def session():
            client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
            async with (
                client,
                streamable_http_client(f"{live_stack.url}/mcp", http_client=client) as streams,
                ClientSession(streams[0], streams[1]) as mcp,
            ):
                await mcp.initialize()
                tools = {tool.name for tool in (await mcp.list_tools()).tools}
                answer = await mcp.call_tool(
                    "fusion", {"question": "Capital of Australia?", "panel": kit.panel.slug}
                )
                return tools, answer

        tools, answer = async_to_sync(session)()
        assert tools == {"fusion", "list_panels"}
        assert answer.content[0].text.startswith("Canberra, by HTTP.")
    finally:
        kit.close()


def test_mcp_bodies_are_capped_with_or_without_a_content_length(live_stack, settings):
    import httpx
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("mcp-big")
    key = create_key(user, "mcp-big")[1]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    huge = b'{"jsonrpc": "2.0", "padding": "' + b"x" * (settings.API_MAX_BODY_BYTES + 10) + b'"}'
    told = httpx.post(f"{live_stack.url}/mcp", content=huge, headers=headers, timeout=30)
    assert told.status_code == 413 and "the limit" in told.json()["error"]

    def chunks():  # chunked: no Content-Length to trust
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    untold = httpx.post(f"{live_stack.url}/mcp", content=chunks(), headers=headers, timeout=30)
    assert untold.status_code == 413 and "the limit" in untold.json()["error"]

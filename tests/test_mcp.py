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
            command=sys.executable, args=["manage.py", "mcp"], cwd=str(ROOT),
            env=child_env(DATABASE_URL=database_url(connection.settings_dict),
                          FUSIONROOM_API_KEY=key),
        )  # fmt: skip

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

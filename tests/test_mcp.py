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
                # The ad-hoc panel's bounds hold over stdio too (the same code).
                unknown = await mcp.call_tool(
                    "fusion", {"question": "hi", "analysis_models": ["nope"], "model": "judge"}
                )
                return tools, panels, answer, missing, unknown

        tools, panels, answer, missing, unknown = async_to_sync(session)()
        assert tools == {"fusion", "list_panels"}
        assert kit.panel.slug in str(panels.content)
        text = answer.content[0].text
        assert not answer.is_error and text.startswith("The capital is Canberra.")
        assert "fused from Seat-0, Seat-1" in text
        assert missing.is_error and "No panel 'nope'" in missing.content[0].text
        assert unknown.is_error and "`nope` is not a model you can use" in unknown.content[0].text
        assert sum(kit.calls().values()) == 4  # the one run's: two seats, judge, synthesizer
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


def _over_http(live_stack, key: str, calls: list[dict]) -> list:
    """Each of `calls` (the `fusion` tool's arguments) through the app's /mcp, in
    one session of the official MCP client; their results, in order."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def session():
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
        async with (
            client,
            streamable_http_client(f"{live_stack.url}/mcp", http_client=client) as streams,
            ClientSession(streams[0], streams[1]) as mcp,
        ):
            await mcp.initialize()
            return [await mcp.call_tool("fusion", arguments) for arguments in calls]

    return async_to_sync(session)()


def test_mcp_fusion_asks_an_ad_hoc_panel_never_saved(live_stack):
    """`analysis_models` and `model` build a panel for this question alone, as the
    fusion plugin does: the two named seats answer (not the kit panel's third), the
    named analyst judges and writes the answer (no synthesizer), and no panel is
    saved."""
    from chat.models import Run
    from panels.models import Panel

    kit = ScriptedPanel(seats=3)
    try:
        kit.seats[0].default = Reply.stream(["Canberra."])
        kit.seats[2].default = Reply.stream(["Canberra, since 1913."])
        kit.judge.enqueue(analysis_reply(), Reply.stream(["Canberra, ad hoc."]))
        panels = Panel.objects.count()
        key = create_key(kit.user, "mcp-adhoc")[1]
        question = {"question": "Capital of Australia?"}
        [answer] = _over_http(
            live_stack,
            key,
            [{**question, "analysis_models": ["seat-0", "seat-2"], "model": "judge"}],
        )
        text = answer.content[0].text
        assert not answer.is_error, text
        assert text.startswith("Canberra, ad hoc.") and "fused from Seat-0, Seat-2" in text
        assert kit.calls() == {"seat-0": 1, "seat-1": 0, "seat-2": 1, "judge": 2, "synth": 0}
        assert Panel.objects.count() == panels
        run = Run.objects.get()
        assert run.message.conversation.panel is None
        assert run.message.conversation.adhoc_config["seats"][1]["model"]["model_id"] == "seat-2"
        assert run.config["via"] == "mcp"
    finally:
        kit.close()


def test_mcp_fusion_refuses_a_bad_ad_hoc_panel_and_runs_nothing(live_stack):
    from django.contrib.auth import get_user_model

    from chat.models import Run
    from panels.models import CatalogModel, Provider

    kit = ScriptedPanel(seats=2)
    try:
        bob = get_user_model().objects.create_user("bob", password="pw-long-enough-1")
        bobs = Provider.objects.create(name="Bobs", owner=bob, base_url="https://bob.example/v1")
        CatalogModel.objects.create(provider=bobs, model_id="bobs-model", display_name="Bob's")
        key = create_key(kit.user, "mcp-bounds")[1]
        question = {"question": "Capital of Australia?", "model": "judge"}
        none, nine, unknown, bobs_model, bad_judge, no_panel = _over_http(
            live_stack,
            key,
            [
                {**question, "analysis_models": []},
                {**question, "analysis_models": ["seat-0"] * 9},
                {**question, "analysis_models": ["seat-0", "nope"]},
                {**question, "analysis_models": ["bobs-model"]},
                {"question": "Capital?", "analysis_models": ["seat-0"], "model": "nope"},
                {**question, "analysis_models": ["seat-0"], "panel": "nowhere"},
            ],
        )

        def said(result) -> str:
            assert result.is_error
            return result.content[0].text

        assert "1 to 8 model ids; it has 0" in said(none) and "`analysis_models`" in said(none)
        assert "it has 9" in said(nine)
        assert "`nope` is not a model you can use here" in said(unknown)
        assert "(argument `analysis_models[1]`)" in said(unknown)
        # Another user's own model: the same words as an unknown one.
        assert "`bobs-model` is not a model you can use here" in said(bobs_model)
        assert "(argument `analysis_models[0]`)" in said(bobs_model)
        assert "(argument `model`)" in said(bad_judge)
        assert "No panel 'nowhere'" in said(no_panel)
        assert Run.objects.count() == 0
        assert sum(kit.calls().values()) == 0
    finally:
        kit.close()

"""Every door starts a conversation the same way: the chatroom, the API, the MCP
server and the `fusion` command leave the same rows behind (one conversation
titled from the question, one message, one queued run with the panel's frozen
configuration, one queued answer per seat) and count one more use of the panel."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from chat.api import mcp_server
from chat.api import views as api_views
from chat.api.keys import create_key
from chat.api.request import CompletionRequest
from chat.models import Conversation, Run
from panels.models import Panel
from tests.test_panels import alices_panel, models  # noqa: F401 (fixtures)

QUESTION = "  What is   the boiling point of water at sea level, in degrees Celsius and Fahrenheit?"
API_ONLY = {"conversation", "depth", "synthesizer_temperature", "synthesizer_max_tokens", "api_key"}


def _rows(conversation: Conversation) -> dict:
    message = conversation.messages.get()
    run = Run.objects.get(message=message)
    config = {k: v for k, v in run.config.items() if k not in API_ONLY | {"via"}}
    return {
        "owner": conversation.owner_id,
        "panel": conversation.panel_id,
        "model": conversation.model_id,
        "title": conversation.title,
        "message": message.content,
        "status": run.status,
        "config": config,
        "answers": [
            (a.role, a.position, a.model_key, a.model_name, a.status)
            for a in run.answers.order_by("position")
        ],
    }


def _from_conversation(client, alice, panel) -> Conversation:
    client.force_login(alice)
    data = {"answerer": f"panel:{panel.pk}", "content": QUESTION}
    assert client.post(reverse("chat:start"), data).status_code == 302
    return Conversation.objects.latest("pk")


def _from_api(alice, panel) -> Conversation:
    record, _ = create_key(alice, "k")
    messages = [{"role": "user", "content": QUESTION.strip()}]
    completion = CompletionRequest(model=f"fusion/{panel.slug}", messages=messages)
    api_views._start(record, completion, panel, 0)
    return Conversation.objects.latest("pk")


def _from_mcp(alice, panel) -> Conversation:
    mcp_server._start((alice, None), QUESTION.strip(), panel.slug, None, "")
    return Conversation.objects.latest("pk")


def _from_cli(alice, panel) -> Conversation:
    # No worker runs in this test: the command starts the run, then gives up waiting.
    with pytest.raises(CommandError, match="No result within"):
        args = ["ask", QUESTION, "--panel", panel.slug, "--user", "alice", "--timeout", "0.3"]
        call_command("fusion", *args)
    return Conversation.objects.latest("pk")


@pytest.mark.django_db(transaction=True)
def test_every_door_leaves_the_same_rows(client, alice, alices_panel, monkeypatch, settings):  # noqa: F811
    settings.CONCURRENT_RUNS = 10  # nothing answers these runs: they all stay queued
    # Record what would be queued instead of queueing it: a worker started by other
    # tests of the session would otherwise pick the runs up and change their rows.
    queued: list[int] = []
    monkeypatch.setattr("chat.engine.runs.enqueue", queued.append)
    doors = {
        "conversation": lambda: _from_conversation(client, alice, alices_panel),
        "api": lambda: _from_api(alice, alices_panel),
        "mcp": lambda: _from_mcp(alice, alices_panel),
        "cli": lambda: _from_cli(alice, alices_panel),
    }
    rows = {}
    for via, start in doors.items():
        conversation = start()
        rows[via] = _rows(conversation)
        assert Run.objects.get(message__conversation=conversation).config["via"] == via
    assert (
        rows["conversation"]["title"]
        == "What is the boiling point of water at sea level, in degrees…"
    )
    assert rows["conversation"]["status"] == Run.Status.QUEUED
    assert len(rows["conversation"]["answers"]) == 3
    for via in ("api", "mcp", "cli"):
        assert rows[via] == rows["conversation"], via
    assert len(queued) == len(set(queued)) == 4  # each door queued its run, once
    assert Panel.objects.get(pk=alices_panel.pk).use_count == 4

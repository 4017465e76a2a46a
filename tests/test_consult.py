"""The chatroom's "May consult the panel": one model, given the fusion tool, decides
per question whether to convene a panel. Scripted upstreams (the model, the panel's
seats and judge); the run goes through the room's door (the new-chat form) and the
engine, and every upstream call is counted. Then the refusals: a model that cannot
call tools, a panel answering, a panel the user may not use."""

import asyncio
import json

import pytest
from django.urls import reverse

from chat.models import Conversation, Run
from panels.models import CatalogModel, Panel
from tests.conftest import PASSWORD
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]

QUESTION = "Is it safe to take ibuprofen with a coffee?"
FINAL = "Yes, as the panel agreed: coffee does not change how ibuprofen works."
REASON = "This is a health question: I want several opinions."


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def kit(alice):
    """Three scripted seats and a judge (the panel "Scripted"), and `model`, the scripted
    model that may consult it."""
    kit = ScriptedPanel(seats=3, user=alice, solo=True)
    for i, seat in enumerate(kit.seats):
        seat.default = Reply.stream([f"Seat {i}: yes, that is fine."])
    kit.judge.default = analysis_reply()
    yield kit
    kit.close()


def _start(client, kit, **fields) -> Conversation:
    """Ask through the room's new-chat form, as the composer posts it."""
    client.login(username="alice", password=PASSWORD)
    data = {"content": QUESTION, "answerer": f"model:{kit.solo.pk}", "consult": "on"}
    data["consult_panel"] = str(kit.panel.pk)
    response = client.post(reverse("chat:start"), {**data, **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Conversation.objects.get(owner=kit.user, model__isnull=False)


def _run(kit, conversation: Conversation) -> tuple[Run, list[dict]]:
    run = Run.objects.get(message__conversation=conversation)
    kit.conversation = conversation  # the events run_and_listen reads
    events = asyncio.run(run_and_listen(kit, run.pk))
    run.refresh_from_db()
    return run, events


def test_the_model_consults_the_panel_and_answers_from_its_analysis(client, kit):
    arguments = json.dumps({"question": "Does caffeine interact with ibuprofen?"})
    kit.model.enqueue(
        Reply.tool_calls([("call_1", "fusion", arguments)], text=REASON),
        Reply.stream([FINAL]),
    )
    conversation = _start(client, kit)
    assert conversation.model == kit.solo and conversation.consult_panel == kit.panel
    assert conversation.answered_by == "Solo · may consult Scripted"
    run, events = _run(kit, conversation)

    assert run.status == Run.Status.DONE, (run.failure_reason, run.failure_detail)
    # What the model wrote beside its call streams too, before its answer.
    assert run.final_answer.model_key == "solo"
    assert run.final_answer.text == f"{REASON}\n\n{FINAL}"
    # The model twice (the call, then the answer), each seat and the judge once, and
    # never the panel's synthesizer: the model writes the answer.
    assert len(kit.model.requests) == 2
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "seat-2": 1, "judge": 1, "synth": 0}
    first, second = kit.model.requests
    assert [t["function"]["name"] for t in first["json"]["tools"]] == ["fusion"]
    assert first["json"].get("tool_choice") in (None, "auto")  # its own decision
    # The seats were asked the model's question; the model read the analysis.
    asked = kit.seats[0].requests[0]["json"]["messages"][-1]["content"]
    assert "Does caffeine interact with ibuprofen?" in asked
    [result] = [m for m in second["json"]["messages"] if m["role"] == "tool"]
    assert json.loads(result["content"])["analysis"]["consensus"] == ["Canberra is the capital"]
    # One consultation a question: the answering round offers no more tools.
    assert "tools" not in second["json"] or not second["json"]["tools"]

    [card] = run.decisions
    assert card["stage"] == "consult"
    assert card["summary"] == (
        "Consulted the panel “Scripted”, asking “Does caffeine interact with ibuprofen?”; "
        f"the model’s reason: “{REASON}”"
    )
    assert card["detail"]["models"] == ["seat-0", "seat-1", "seat-2"]
    assert [e["decision"]["summary"] for e in events if e["type"] == "decision"] == [
        card["summary"]
    ]
    roles = [a.role for a in run.answers.order_by("position")]
    assert roles == ["seat", "seat", "seat", "seat", "judge"]

    # The room shows the model's answer, the panel it consulted beneath; the trace too.
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert "The panel it consulted" in page and "(3 models, judge)" in page
    assert page.index(FINAL) < page.index("The panel it consulted")
    trace = client.get(reverse("chat:trace", args=[run.pk]))
    assert trace.status_code == 200 and "Seat-2" in trace.content.decode()


def test_the_model_declines_and_answers_alone(client, kit):
    kit.model.enqueue(Reply.stream(["You're welcome!"]))
    conversation = _start(client, kit, content="thanks!")
    run, events = _run(kit, conversation)

    assert run.status == Run.Status.DONE
    assert run.final_answer.text == "You're welcome!"
    assert len(kit.model.requests) == 1
    assert kit.calls() == {"seat-0": 0, "seat-1": 0, "seat-2": 0, "judge": 0, "synth": 0}
    [offered] = kit.model.requests[0]["json"]["tools"]
    assert offered["function"]["name"] == "fusion"  # it could have, and chose not to
    [card] = run.decisions
    assert card["stage"] == "consult"
    assert card["summary"] == "Answered alone, without consulting the panel “Scripted”"
    assert any(e["type"] == "decision" for e in events)
    assert [a.role for a in run.answers.all()] == ["seat"]
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert "Answered alone" in page and "The panel it consulted" not in page


def test_left_alone_the_default_panel_is_the_one_consulted(client, kit, settings):
    settings.DEFAULT_PANEL = "scripted"  # the kit's panel's slug
    conversation = _start(client, kit, consult_panel="")
    assert conversation.consult_panel == kit.panel


def test_without_the_box_ticked_the_model_is_given_no_tool(client, kit):
    kit.model.enqueue(Reply.stream(["Yes."]))
    conversation = _start(client, kit, consult="")
    assert conversation.consult_panel is None
    run, _ = _run(kit, conversation)
    assert run.status == Run.Status.DONE and run.decisions == []
    assert "tools" not in kit.model.requests[0]["json"]


def _refused(client, kit, **fields) -> str:
    client.login(username="alice", password=PASSWORD)
    data = {"content": QUESTION, "answerer": f"model:{kit.solo.pk}", "consult": "on"}
    data["consult_panel"] = str(kit.panel.pk)
    response = client.post(reverse("chat:start"), {**data, **fields})
    assert response.status_code == 400
    assert not Conversation.objects.filter(model__isnull=False).exists()
    assert not Run.objects.exists()
    return response.content.decode()


def test_a_model_that_cannot_call_tools_is_refused_naming_the_field(client, kit):
    CatalogModel.objects.filter(pk=kit.solo.pk).update(supports_tools=False)
    page = _refused(client, kit)
    assert "May consult the panel: Solo cannot call tools" in page
    assert len(kit.model.requests) == 0


def test_a_panel_cannot_be_let_to_consult(client, kit):
    page = _refused(client, kit, answerer=f"panel:{kit.panel.pk}")
    assert "May consult the panel: this is for one model" in page


def test_another_users_private_panel_cannot_be_consulted(client, kit, bob):
    theirs = Panel.objects.create(slug="bobs", name="Bob's", owner=bob, visibility="private")
    page = _refused(client, kit, consult_panel=str(theirs.pk))
    assert "Panel to consult: that panel is not one you may use" in page
    assert "Bob&#x27;s" not in page  # not even listed among the choices


def test_a_panel_made_private_since_stops_later_turns(client, kit, bob):
    shared = Panel.objects.create(slug="bobs", name="Bob's", owner=bob, visibility="public")
    conversation = _start(client, kit, consult_panel=str(shared.pk))
    Run.objects.update(status=Run.Status.DONE)  # the first turn answered
    Panel.objects.filter(pk=shared.pk).update(visibility="private")
    url = reverse("chat:send", args=[conversation.pk])
    response = client.post(url, {"content": "And with tea?"})
    assert response.status_code == 403
    assert "which this model may consult, is no longer shared with you" in response.content.decode()
    assert conversation.messages.count() == 1

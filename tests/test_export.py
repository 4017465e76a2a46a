"""Exports: Markdown and JSON with every turn of the current branch (and its other
versions named), every seat, the analysis, the decisions, the costs and the traces;
for the owner and for whoever has the share link; streamed, even for 500 turns."""

import json
import tracemalloc

import pytest
from django.http import StreamingHttpResponse
from django.test import RequestFactory
from django.urls import reverse

from chat import export
from chat.models import Conversation
from tests.versions_kit import SEATS, finished_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice, smollm2):
    conversation = Conversation.objects.create(owner=alice, model=smollm2, title="Capitals")
    first = finished_turn(conversation, "Capital of France?", None, "Paris")
    finished_turn(conversation, "Capital of Italy?", None, "Rome")  # a second version
    finished_turn(conversation, "And Spain?", first, "Madrid")  # the branch shown
    return conversation


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_the_owner_exports_markdown_with_every_seat(client, alice, conversation):
    client.force_login(alice)
    response = client.get(reverse("chat:export", args=[conversation.pk, "md"]))
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"] == 'attachment; filename="capitals.md"'
    text = body(response)
    for seat in SEATS:
        assert f"{seat} says Paris" in text and f"{seat} says Madrid" in text
    assert "Rome" not in text  # the other version is named, not shown
    assert "Version 1 of 2" in text and "## Turn 2" in text
    assert "agreed on Paris" in text and "Vote 2–0 for Madrid" in text
    assert "cost $0.00120000" in text and "/runs/" in text and "/trace/" in text


def test_the_json_export_is_one_document_with_every_seat(client, alice, conversation):
    client.force_login(alice)
    data = json.loads(body(client.get(reverse("chat:export", args=[conversation.pk, "json"]))))
    assert data["conversation"]["title"] == "Capitals"
    first, second = data["turns"]
    assert (first["version"], first["versions"], len(first["version_messages"])) == (1, 2, 2)
    assert [s["model"] for s in first["run"]["seats"]] == list(SEATS)
    assert second["run"]["final_answer"] == "Madrid"
    assert second["run"]["analysis"]["consensus"] == ["agreed on Madrid"]
    assert second["run"]["decisions"][0]["summary"] == "Vote 2–0 for Madrid"
    assert second["run"]["cost_usd"] == "0.00120000"
    assert second["run"]["trace"].endswith(f"/runs/{second['run']['id']}/trace/")


def test_a_shared_conversation_exports_by_its_link_and_nobody_else_may(client, bob, conversation):
    assert client.get(reverse("chat:export", args=[conversation.pk, "md"])).status_code == 404
    client.force_login(bob)
    assert client.get(reverse("chat:export", args=[conversation.pk, "json"])).status_code == 404
    conversation.share_token = "tok-" + "x" * 30
    conversation.save()
    response = client.get(reverse("chat:export_shared", args=[conversation.share_token, "md"]))
    assert "Seat Beta says Madrid" in body(response)
    page = client.get(reverse("chat:shared", args=[conversation.share_token])).content.decode()
    assert reverse("chat:export_shared", args=[conversation.share_token, "json"]) in page
    assert client.get(f"/c/{conversation.pk}/export.html").status_code == 404


def export_peak(conversation, user) -> tuple[int, int]:
    """The bytes an export of `conversation` writes, and the most memory it held at
    once while written: the view itself, read as a server would."""
    request = RequestFactory().get(reverse("chat:export", args=[conversation.pk, "md"]))
    request.user = user
    response = export.owned(request, conversation.pk, "md")
    assert isinstance(response, StreamingHttpResponse)
    tracing_already = tracemalloc.is_tracing()  # pytest may trace for its warnings
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        size = sum(len(chunk) for chunk in response.streaming_content)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing_already:
            tracemalloc.stop()
    return size, peak


def long_conversation(owner, model, turns: int) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, model=model, title="Long")
    previous = None
    for number in range(turns):
        previous = finished_turn(conversation, f"Question {number}?", previous, "x" * 4000)
    return conversation


def test_a_500_turn_export_streams_in_bounded_memory(client, alice, smollm2):
    conversation = long_conversation(alice, smollm2, 500)
    client.force_login(alice)
    response = client.get(reverse("chat:export", args=[conversation.pk, "md"]))
    assert isinstance(response, StreamingHttpResponse)

    size, peak = export_peak(conversation, alice)
    short_size, short_peak = export_peak(long_conversation(alice, smollm2, 100), alice)
    assert size > 6_000_000  # all of it was written: 500 turns, three answers each
    # Five times the turns, not five times the memory: it is held a chunk at a time.
    assert size > 4.5 * short_size and peak < 1.5 * short_peak, (size, peak, short_size, short_peak)
    assert peak < size, f"peak {peak:,} bytes for an export of {size:,}"

"""The chatroom's pages around a run: rename, search, share, trace, compare, blind vote;
who may see them; and model output that tries to run script."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from chat.models import Answer, BlindVote, Conversation, Message, Run

XSS = (
    "<script>alert('x')</script> <img src=x onerror=alert(1)> "
    '[click](javascript:alert(1)) <a href="javascript:alert(2)">raw</a>'
)


class _ActiveContent(HTMLParser):
    """Collects what a browser would execute: inline scripts, on* handlers and
    javascript: URLs. Escaped text is not active content."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name in ("href", "src") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"inline script: {data[:40]}")

    def handle_endtag(self, tag):
        self._in_script = False


def active_content(html: str) -> list[str]:
    parser = _ActiveContent()
    parser.feed(html)
    return parser.found


@pytest.fixture
def finished_run(alice, smollm2):
    conversation = Conversation.objects.create(owner=alice, model=smollm2, title="Capitals")
    run = Run.objects.create(
        message=Message.objects.create(conversation=conversation, content="Capital of Australia?"),
        status=Run.Status.DONE,
        config={"judge": {"model_id": "j"}},
        stage_ms={"panel": 100, "judging": 50, "synthesizing": 80, "total": 240},
        analysis={
            "consensus": ["Canberra"],
            "contradictions": [],
            "unique_insights": [],
            "blind_spots": [],
            "errors": [],
            "scores": [],
        },
    )
    seat = Answer.objects.create(
        run=run,
        role="seat",
        model_name="Seat One",
        text=XSS,
        status="done",
        started_ms=0,
        latency_ms=100,
    )
    Answer.objects.create(
        run=run,
        role="seat",
        position=1,
        model_name="Seat Two",
        text="Sydney",
        status="done",
        started_ms=0,
        latency_ms=90,
    )
    synthesis = Answer.objects.create(
        run=run,
        role="synthesizer",
        position=3,
        text="Canberra.",
        model_name="Synth",
        status="done",
        started_ms=150,
        latency_ms=80,
    )
    run.analysis["labels"] = {"A": seat.pk}
    run.save()
    return run, synthesis


def test_model_output_renders_inert(client, alice, finished_run):
    run, _ = finished_run
    client.force_login(alice)
    page = client.get(run.message.conversation.get_absolute_url()).content.decode()
    assert "&lt;script&gt;" in page  # shown as text…
    assert active_content(page) == []  # …and nothing in it can run


def test_rename_and_search(client, alice, finished_run):
    run, _ = finished_run
    conversation = run.message.conversation
    Conversation.objects.create(owner=alice, title="Recipes")
    client.force_login(alice)
    client.post(
        reverse("chat:rename", args=[conversation.pk]), {"title": "  Australian   capitals "}
    )
    conversation.refresh_from_db()
    assert conversation.title == "Australian capitals"
    page = client.get(reverse("chat:home"), {"q": "austral"}).content.decode()
    assert "Australian capitals" in page and "Recipes" not in page
    response = client.post(
        reverse("chat:rename", args=[conversation.pk]), {"title": "  "}, follow=True
    )
    assert "A title cannot be empty." in response.content.decode()


def test_share_link_reads_logged_out_until_revoked(client, alice, finished_run):
    run, _ = finished_run
    conversation = run.message.conversation
    client.force_login(alice)
    client.post(reverse("chat:share", args=[conversation.pk]))
    conversation.refresh_from_db()
    assert conversation.share_token and len(conversation.share_token) >= 32
    client.logout()
    shared = client.get(reverse("chat:shared", args=[conversation.share_token]))
    assert shared.status_code == 200
    body = shared.content.decode()
    assert "Capital of Australia?" in body and "Canberra." in body and "Seat Two" in body
    assert active_content(body) == []
    assert reverse("chat:blind_vote", args=[run.pk]) not in body  # read-only: no blind-vote link
    client.force_login(alice)
    client.post(reverse("chat:share", args=[conversation.pk]), {"action": "revoke"})
    client.logout()
    assert client.get(reverse("chat:shared", args=[conversation.share_token])).status_code == 404
    assert client.get(reverse("chat:shared", args=["guess"])).status_code == 404


def test_run_pages_are_the_owners_alone(client, alice, charlie, finished_run):
    run, synthesis = finished_run
    client.force_login(charlie)
    for name in ("chat:trace", "chat:compare", "chat:blind_vote"):
        assert client.get(reverse(name, args=[run.pk])).status_code == 404
    assert (
        client.post(reverse("chat:blind_vote", args=[run.pk]), {"answer": synthesis.pk}).status_code
        == 404
    )
    assert client.post(reverse("chat:share", args=[run.message.conversation_id])).status_code == 404
    client.force_login(alice)
    trace = client.get(reverse("chat:trace", args=[run.pk])).content.decode()
    assert "<svg" in trace and "Synthesis: Synth" in trace
    compare = client.get(reverse("chat:compare", args=[run.pk])).content.decode()
    assert "Seat One" in compare and "Canberra" in compare and active_content(compare) == []


def test_a_blind_vote_is_recorded_and_counted(client, alice, finished_run):
    run, synthesis = finished_run
    client.force_login(alice)
    ballot = client.get(reverse("chat:blind_vote", args=[run.pk])).content.decode()
    assert "Seat One" not in ballot and "Synth" not in ballot  # blind until voted
    assert 'name="choice"' in ballot and "data-answer" not in ballot  # places, not ids
    from chat.run_views import _ballot

    place = [a.pk for a in _ballot(run, alice.pk)].index(synthesis.pk) + 1
    response = client.post(reverse("chat:blind_vote", args=[run.pk]), {"choice": str(place)})
    assert response.status_code == 302
    assert BlindVote.objects.get(run=run, user=alice).answer == synthesis
    revealed = client.get(reverse("chat:blind_vote", args=[run.pk])).content.decode()
    assert "the synthesis (Synth)" in revealed
    board = client.get(reverse("chat:leaderboard")).content.decode()
    assert "Synthesis" in board and "100%" in board and "Seat Two" in board
    bad = client.post(reverse("chat:blind_vote", args=[run.pk]), {"choice": "99"})
    assert bad.status_code == 400 and "Pick one of the answers." in bad.content.decode()
    old_link = client.get(f"/runs/{run.pk}/vote/")  # the address before "blind vote"
    assert old_link.status_code == 301
    assert old_link["Location"] == reverse("chat:blind_vote", args=[run.pk])


def test_blind_votes_and_compare_refuse_what_they_cannot_use(client, alice, finished_run):
    run, _ = finished_run
    client.force_login(alice)
    assert client.get(reverse("chat:compare", args=[run.pk]), {"answer": "²"}).status_code == 200
    Run.objects.filter(pk=run.pk).update(status=Run.Status.PANEL)
    assert client.get(reverse("chat:blind_vote", args=[run.pk])).status_code == 404
    assert (
        client.post(reverse("chat:blind_vote", args=[run.pk]), {"choice": "1"}).status_code == 404
    )

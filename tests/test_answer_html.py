"""An answer's Markdown is rendered once, when its text is saved (in the saving
thread, off any event loop), and stored: events, snapshots and pages read the stored
HTML. Rendering is counted by wrapping the pure function that does it."""

import asyncio
import importlib

import pytest
from django.apps import apps

from chat import markdown
from chat.engine import events, live
from chat.models import Answer, Conversation, Message, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """Every text chat.markdown.render is asked to render, from here on."""
    seen: list[str] = []
    real = markdown.render

    def counting(text: str) -> str:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(markdown, "render", counting)
    return seen


@pytest.fixture
def conversation(alice):
    conversation = Conversation.objects.create(owner=alice, title="Capitals")
    run = Run.objects.create(
        message=Message.objects.create(conversation=conversation, content="Capital?"),
        status=Run.Status.DONE,
    )
    return conversation, run


def snapshot_answers(conversation) -> list[dict]:
    async def read():
        redis = live.redis_client()
        try:
            return await events.conversation_snapshot(redis, conversation.pk)
        finally:
            await redis.aclose()

    return asyncio.run(read())["runs"][0]["answers"]


def test_html_is_rendered_once_when_saved_and_read_everywhere(client, alice, conversation, renders):
    conversation, run = conversation
    answer = Answer.objects.create(run=run, model_name="Seat", status="streaming")
    assert renders == [] and answer.html == ""  # nothing to render yet
    answer.text, answer.status = "**Canberra**, since 1913.", Answer.Status.DONE
    answer.save()
    assert renders == ["**Canberra**, since 1913."]
    html = "<p><strong>Canberra</strong>, since 1913.</p>\n"
    assert Answer.objects.get(pk=answer.pk).html == html

    answer.save()  # unchanged text: not rendered again
    answer.save(update_fields=["status"])
    Answer.objects.get(pk=answer.pk).save()  # a row read back knows its html is current
    assert events.answer_ended(answer, 3)["html"] == html
    assert [item["html"] for item in snapshot_answers(conversation)] == [html]
    client.force_login(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert html.strip() in page
    assert len(renders) == 1  # the event, the snapshot and the page read the stored HTML

    answer.text = "Sydney?"
    answer.save(update_fields=["text"])  # new text: rendered, and the html saved with it
    assert Answer.objects.get(pk=answer.pk).html == "<p>Sydney?</p>\n"
    assert len(renders) == 2


def test_a_row_without_html_is_rendered_on_read_and_by_the_migration(conversation, renders):
    conversation, run = conversation
    answer = Answer.objects.create(run=run, model_name="Seat", text="*old*", status="done")
    Answer.objects.filter(pk=answer.pk).update(html="")  # as rows saved before the field
    assert snapshot_answers(conversation)[0]["html"] == "<p><em>old</em></p>\n"  # never shown empty

    migration = importlib.import_module("chat.migrations.0009_answer_html")
    migration.render_saved_answers(apps, None)
    assert Answer.objects.get(pk=answer.pk).html == "<p><em>old</em></p>\n"
    renders.clear()
    assert snapshot_answers(conversation)[0]["html"] == "<p><em>old</em></p>\n"
    assert renders == []


def test_rendering_reads_no_more_than_an_answer_may_hold(settings):
    settings.ANSWER_MAX_CHARS = 1000
    html = markdown.render("a" * 999 + "bc")
    assert "a" * 999 + "b" in html and "bc" not in html
    assert html.endswith(markdown.CUT_NOTE)
    assert markdown.CUT_NOTE not in markdown.render("a" * 1000)


def test_a_row_without_html_is_never_rendered_on_an_event_loop(conversation, monkeypatch):
    """A row whose text skipped save() (QuerySet.update) is rendered for a snapshot in
    the run's database thread and stored there; body_html read on a loop never renders."""
    conversation, run = conversation
    answer = Answer.objects.create(run=run, model_name="Seat", text="*old*", status="done")
    Answer.objects.filter(pk=answer.pk).update(html="", text="*newer* <b>")
    on_loop: list[bool] = []
    real = markdown.render

    def where(text: str) -> str:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(text)

    monkeypatch.setattr(markdown, "render", where)
    assert snapshot_answers(conversation)[0]["html"] == "<p><em>newer</em> &lt;b&gt;</p>\n"
    assert on_loop == [False]  # rendered once, off the loop
    assert Answer.objects.get(pk=answer.pk).html == "<p><em>newer</em> &lt;b&gt;</p>\n"

    Answer.objects.filter(pk=answer.pk).update(html="")
    row = Answer.objects.get(pk=answer.pk)

    async def read_on_the_loop() -> str:
        return row.body_html

    assert asyncio.run(read_on_the_loop()) == '<p class="unrendered">*newer* &lt;b&gt;</p>'
    assert on_loop == [False]  # the guard showed the text escaped, and rendered nothing

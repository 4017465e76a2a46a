"""Versions of a turn in Chromium: an edited question is a second version, the arrows
(buttons reached by Tab, pressed with Enter) move between the versions, and a
regenerated answer keeps the earlier one. Screenshots of a turn with its arrows at
desktop and phone widths go to docs/screenshots/.

Served by Django's test server, with no worker: a run is answered as soon as it is
enqueued, through the ORM (a canned answer), so the page only has to fetch the thread.
"""

from pathlib import Path

import pytest
from django.test import Client

from chat.engine import runs
from chat.models import Answer, Conversation, Message, Run
from tests.conftest import checked_page, on_a_phone, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# Django's test server speaks no websocket: the page's socket fails, and says so.
NO_SOCKET = "WebSocket"


def answer_at_once(run_id: int) -> None:
    """Close the run as a worker would, with a canned answer naming which take it is."""
    run = Run.objects.select_related("message").get(pk=run_id)
    take = Message.objects.filter(
        conversation=run.message.conversation_id, content=run.message.content
    ).count()
    for answer in run.answers.all():
        answer.status = Answer.Status.DONE
        answer.text = f"Answer to “{run.message.content}”, take {take}."
        answer.save()
    run.status = Run.Status.DONE
    run.save(update_fields=["status"])


@pytest.fixture
def conversation(alice, smollm2, monkeypatch):
    monkeypatch.setattr(runs, "enqueue", answer_at_once)
    conversation = Conversation.objects.create(owner=alice, model=smollm2, title="Capitals")
    runs.start_run(conversation, "What is the capital of France?")
    return conversation


def logged_in(page, base: str, user) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}]
    )


def shown(page, text: str) -> None:
    """Wait until the turn's version counter reads `text` ("2 / 2")."""
    counter = page.locator("[data-role=version]")
    wait_until(lambda: counter.count() == 1 and counter.inner_text() == text, 30, f"version {text}")


def focused_role(page) -> str | None:
    return page.evaluate("document.activeElement?.dataset.role ?? null")


def test_edit_makes_a_version_the_arrows_move_and_regenerate_keeps_both(
    browser, live_server, alice, conversation
):
    with checked_page(browser, expected_console_error=NO_SOCKET) as page:
        logged_in(page, live_server.url, alice)
        page.goto(live_server.url + conversation.get_absolute_url())
        question = page.locator("[data-role=question]")
        assert page.locator("[data-role=version]").count() == 0  # one version: no arrows

        # Edit the question: a second version of the turn, shown at once.
        page.click("[data-role=edit]")
        page.fill("[data-role=edit-form] textarea", "What is the capital of Italy?")
        page.click("[data-role=edit-form] button[type=submit]")
        shown(page, "2 / 2")
        assert question.inner_text() == "What is the capital of Italy?"
        assert "“What is the capital of Italy?”, take 1" in page.inner_text(".thread")
        assert page.locator("[data-role=version-next]").is_disabled()

        # The keyboard: Tab from the question reaches the previous arrow; Enter moves.
        question.click()
        page.keyboard.press("Tab")
        assert focused_role(page) == "version-previous"
        page.keyboard.press("Enter")
        shown(page, "1 / 2")
        assert question.inner_text() == "What is the capital of France?"
        # The focus stays on an arrow (the previous one is disabled now: the next).
        wait_until(lambda: focused_role(page) == "version-next", 10, "focus on the next arrow")
        page.keyboard.press("Enter")
        shown(page, "2 / 2")

        # Regenerate: a third version with a new answer; the earlier answer is kept.
        page.click("[data-role=regenerate-form] button")
        shown(page, "3 / 3")
        assert "“What is the capital of Italy?”, take 2" in page.inner_text(".thread")
        page.click("[data-role=version-previous]")
        shown(page, "2 / 3")
        assert "“What is the capital of Italy?”, take 1" in page.inner_text(".thread")
        assert Run.objects.filter(message__conversation=conversation).count() == 3

        # A reload keeps the version chosen.
        page.reload()
        shown(page, "2 / 3")

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "versions-desktop.png"))
        phone = on_a_phone(browser, page)
        try:
            phone.locator("[data-role=version]").wait_for()
            phone.screenshot(path=str(SCREENSHOTS / "versions-phone.png"))
        finally:
            phone.context.close()

"""The chatroom's "May consult the panel" in a browser, on the live stack (Daphne, a
worker, Redis) with scripted upstreams: choose one model, tick the box, pick the
panel, ask. The model convenes the panel for a real question (the decision card
quotes its reasons, the answer streams, the panel's seats and judge are beneath)
and answers "thanks!" alone (the card says so). Screenshots at desktop and phone
widths go to docs/screenshots/ (docs/OPENROUTER_FUSION.md shows them)."""

import json
import threading
from pathlib import Path

import pytest

from chat.models import Conversation, Run
from tests.conftest import log_in, on_a_phone
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
QUESTION = "What is the capital of Australia, and since when?"
REASON = "Capitals are often confused; I will ask the panel."
FINAL = [
    "The capital ",
    "is Canberra, ",
    "chosen in 1908 ",
    "and the seat of parliament since 1927.",
]


@pytest.fixture
def kit(live_stack):
    kit = ScriptedPanel(seats=3, solo=True)
    kit.seats[0].default = Reply.stream(["Canberra, ", "since 1913."], delay=0.2)
    kit.seats[1].default = Reply.stream(["Sydney."], delay=0.2)
    kit.seats[2].default = Reply.stream(
        ["Canberra; ", "parliament moved there in 1927."], delay=0.2
    )
    kit.judge.default = analysis_reply()
    yield kit
    kit.close()


def test_one_model_consults_the_panel_when_it_judges_the_question_needs_it(
    live_stack, kit, page, browser
):
    arguments = json.dumps({"question": "Which city is Australia's capital, since when?"})
    kit.model.enqueue(
        Reply.tool_calls([("call_1", "fusion", arguments)], text=REASON),
        Reply.stream(FINAL, delay=0.2),
        Reply.stream(["You're welcome!"]),  # the second question: it declines
    )
    # The judge's analysis is held back until the page has been seen mid-run: the
    # panel's seats answered beneath the model's answer, still waiting.
    release = threading.Event()

    def held_analysis():
        release.wait(90)
        yield from analysis_reply().chunks

    kit.judge.enqueue(Reply(headers={"Content-Type": "text/event-stream"}, chunks=held_analysis()))
    base = live_stack.url
    log_in(page, base)

    # The consult options show for a single model; the panel choice once ticked.
    consult = page.locator("[data-role=consult]")
    page.select_option("#id_answerer", f"panel:{kit.panel.pk}")
    assert not consult.is_visible()
    page.select_option("#id_answerer", f"model:{kit.solo.pk}")
    assert consult.is_visible() and not page.locator("#id_consult_panel").is_visible()
    page.check("#id_consult")
    page.select_option("#id_consult_panel", str(kit.panel.pk))
    page.fill("#id_content", QUESTION)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "consult-composer-desktop.png"))
    phone = on_a_phone(browser, page)
    phone.select_option("#id_answerer", f"model:{kit.solo.pk}")
    phone.check("#id_consult")
    phone.screenshot(path=str(SCREENSHOTS / "consult-composer-phone.png"))
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.context.close()

    page.click(".composer button[type=submit]")
    page.wait_for_url(f"{base}/c/*/")
    assert "Solo · may consult Scripted" in page.locator(".conversation-head .badge").inner_text()
    card = page.locator(".decision-card.decision-consult")
    card.wait_for(timeout=60_000)
    assert "Consulted the panel “Scripted”" in card.inner_text()
    assert REASON in card.inner_text()
    consulting = page.locator("details.consulted[open]")
    consulting.locator(".seats .answer[data-status=done]").nth(2).wait_for(timeout=60_000)
    own_answer = page.locator(".run > .answer")
    assert own_answer.get_attribute("data-status") == "streaming"
    # What the model wrote beside its call is live text (the page redrawn by the
    # panel's events fills it back from the snapshot).
    page.wait_for_function(
        "(reason) => document.querySelector('.run > .answer [data-role=body]')"
        ".textContent.includes(reason)",
        arg=REASON,
    )
    page.screenshot(path=str(SCREENSHOTS / "consult-mid-run-desktop.png"))
    release.set()
    run_el = page.locator(".run[data-status=done]")
    run_el.wait_for(timeout=60_000)
    answer = page.locator(".run > .answer [data-role=body]")
    assert "The capital is Canberra" in answer.inner_text()
    # The answer streamed: more than one delta of the model's answer reached the page.
    conversation = Conversation.objects.get(model=kit.solo)
    run = Run.objects.get(message__conversation=conversation)
    own = run.final_answer
    deltas = page.evaluate(
        "(id) => window.__frames.filter(f => f.type === 'answer.delta' && f.answer === id).length",
        own.pk,
    )
    assert deltas >= 2, deltas
    # The panel beneath: three seats and the judge's analysis, folded once done.
    panel = page.locator("details.consulted")
    assert "3 models, judge" in panel.locator(":scope > summary").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "consult-answer-desktop.png"))
    panel.locator(":scope > summary").click()
    assert panel.locator(".seats .answer").count() == 3
    assert panel.locator(".analysis").first.is_visible()
    # The thread scrolls, not the page: bring the panel's answers to the top to show them.
    panel.locator(".stage-title").first.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SCREENSHOTS / "consult-panel-desktop.png"))
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1] and len(kit.judge.requests) == 1
    assert len(kit.synthesizer.requests) == 0

    phone = on_a_phone(browser, page)
    phone_card = phone.locator(".decision-card.decision-consult")
    phone_card.wait_for()
    phone_card.evaluate("el => el.scrollIntoView({block: 'start'})")
    phone.screenshot(path=str(SCREENSHOTS / "consult-answer-phone.png"))
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.context.close()

    # A message that needs no panel: the model answers alone, and the card says so.
    page.fill("#id_content", "thanks!")
    page.click(".composer button[type=submit]")
    cards = page.locator(".decision-card.decision-consult")
    cards.nth(1).wait_for(timeout=60_000)
    assert (
        cards.nth(1)
        .inner_text()
        .endswith("Answered alone, without consulting the panel “Scripted”")
    )
    page.locator(".run[data-status=done]").nth(1).wait_for(timeout=60_000)
    assert "You're welcome!" in page.locator(".turn").nth(1).inner_text()
    assert page.locator(".turn").nth(1).locator("details.consulted").count() == 0
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1]  # not asked again
    assert len(kit.model.requests) == 3
    page.screenshot(path=str(SCREENSHOTS / "consult-alone-desktop.png"))

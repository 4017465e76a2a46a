"""The chatroom in headless Chromium against the live stack (Daphne, a Celery
worker, Redis), with scripted upstreams so every seat behaves as the test says:
columns stream in parallel, a failed seat shows its error, the analysis and the
final answer appear, reload mid-run resumes, Stop cancels, the share link reads
logged out, and a blind vote is recorded."""

import pytest

from chat.models import BlindVote, Run
from tests.conftest import ARTIFACTS, log_in, on_a_phone
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SEAT_TEXT = [f"word{i} " for i in range(12)]
FINAL = [f"final{i} " for i in range(16)]


@pytest.fixture
def kit(live_stack):
    kit = ScriptedPanel(seats=3)
    kit.seats[0].default = Reply.stream(SEAT_TEXT, delay=0.12)
    kit.seats[1].default = Reply.json(500, {"error": {"message": "seat two is down"}})
    kit.seats[2].default = Reply.stream(SEAT_TEXT, delay=0.12)
    kit.judge.default = analysis_reply()
    kit.synthesizer.default = Reply.stream(FINAL, delay=0.15)
    yield kit
    kit.close()


def send(page, text):
    page.fill("#id_content", text)
    page.click(".composer button[type=submit]")


def test_a_fusion_run_in_the_browser(live_stack, kit, page, browser):
    base = live_stack.url
    log_in(page, base)
    page.goto(base + kit.conversation.get_absolute_url())
    send(page, "What is the capital of Australia?")

    # Two seats stream at the same time, each in its own column.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.seats .answer')].filter(a =>"
        " a.dataset.status === 'streaming' && a.querySelector('.live-text')?.textContent).length"
        " === 2"
    )
    page.screenshot(path=str(ARTIFACTS / "fusion-mid-run.png"))
    columns = page.locator(".seats .answer")
    assert columns.count() == 3
    failed = page.locator(".seats .answer[data-status=failed]")
    failed.wait_for()
    assert "seat two is down" in failed.inner_text()
    assert "word" not in failed.inner_text()  # a column never shows another seat's text

    page.locator(".run[data-status=done]").wait_for(timeout=60_000)
    final = page.locator(".answer-synthesizer [data-role=body]")
    assert final.inner_text().split() == [w.strip() for w in FINAL]
    page.click(".how > summary")
    assert page.locator(".acard.agree").inner_text().count("Canberra") == 1
    assert page.locator(".acard.conflict").is_visible()
    page.screenshot(path=str(ARTIFACTS / "fusion-after-run.png"), full_page=True)

    # Reload in the middle of the synthesis: what arrived is there, the rest follows.
    send(page, "And of New Zealand?")
    page.wait_for_function(
        "() => (document.querySelectorAll('.run')[1]?.querySelector('.answer-synthesizer"
        " .live-text')?.textContent || '').length > 12"
    )
    phone_page = on_a_phone(browser, page)
    phone_page.locator(".run").nth(1).locator(".live-text").first.wait_for()
    phone_page.screenshot(path=str(ARTIFACTS / "fusion-phone-mid-run.png"))
    page.reload()
    second = page.locator(".run").nth(1)
    second.and_(page.locator("[data-status=done]")).wait_for(timeout=60_000)
    assert second.locator(".answer-synthesizer [data-role=body]").inner_text().split() == [
        w.strip() for w in FINAL
    ]
    phone_page.locator(".run[data-status=done]").nth(1).wait_for()
    phone_page.screenshot(path=str(ARTIFACTS / "fusion-phone-after-run.png"))
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.context.close()

    # Stop: every seat hangs; the run ends cancelled at once.
    for server in kit.seats:
        server.default = Reply.stream(["slow "], done=False, finish=None, hang=True)
    send(page, "This one will be stopped.")
    page.locator("[data-role=stop]:visible").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.run').length === 3")
    page.click("[data-role=stop]")
    third = page.locator(".run").nth(2)
    third.and_(page.locator("[data-status=cancelled]")).wait_for(timeout=10_000)
    assert "Stopped by the user." in third.inner_text()

    # Share: a read-only link that works logged out.
    page.click(".conversation-menu summary")
    page.click("button:has-text('Share a read-only link')")
    link = page.locator("[data-role=share-link]").get_attribute("href")
    guest = browser.new_context()
    shared = guest.new_page()
    shared.goto(base + link)
    assert "What is the capital of Australia?" in shared.content()
    assert "final15" in shared.content()
    guest.close()

    # A blind vote for the best answer.
    first_run = Run.objects.filter(message__conversation=kit.conversation).order_by("pk").first()
    page.goto(f"{base}/runs/{first_run.pk}/blind-vote/")
    page.locator("input[name=choice]").first.check()
    page.click("button:has-text('Pick this answer')")
    page.locator(".notice:has-text('Your blind vote is recorded')").wait_for()
    assert BlindVote.objects.filter(run=first_run).count() == 1

"""A seat that searches and reads a page, seen in the browser: its column shows the
tool steps as they happen and the sources under its answer; the final answer lists
the sources the panel used. Screenshots go to docs/screenshots/."""

import json
from pathlib import Path

import pytest

from chat.models import Run
from panels.models import Seat
from tests.conftest import log_in, on_a_phone
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PAGE = """<html><head><title>Canberra facts</title></head><body><article><h1>Canberra</h1>
<p>Canberra is the capital city of Australia, chosen in 1908 as a compromise between
Sydney and Melbourne. Parliament first sat there in 1927.</p></article></body></html>"""


def test_a_seat_column_shows_its_tool_steps_and_sources(live_stack, page, browser):
    page_url = f"http://127.0.0.1:{live_stack.pages.port}/canberra"
    live_stack.search.enqueue(
        Reply.json(
            200,
            {
                "results": [
                    {"title": "Canberra facts", "url": page_url, "content": "The capital…"},
                    {"title": "Australia", "url": "https://example.com/au", "content": "…"},
                ]
            },
        )
    )
    live_stack.pages.enqueue(Reply.page(PAGE))
    kit = ScriptedPanel(seats=2, tools=["web_search", "web_fetch", "run_python"])
    try:
        Seat.objects.filter(panel=kit.panel, position=1).update(use_tools=False)
        search = json.dumps({"query": "capital of Australia"})
        fetch = json.dumps({"url": page_url})
        code = json.dumps({"code": "print(2026 - 1908)"})
        kit.seats[0].enqueue(
            Reply.tool_calls([("c1", "web_search", search)], delay=0.3),
            Reply.tool_calls([("c2", "web_fetch", fetch), ("c3", "run_python", code)]),
            Reply.stream(["Canberra, ", "the capital since 1908 ", "(118 years)."], delay=0.3),
        )
        kit.seats[1].enqueue(Reply.stream(["Canberra."]))
        scores = [{"label": x, "score": 8, "reason": "ok"} for x in "AB"]
        kit.judge.enqueue(analysis_reply({"scores": scores}))
        kit.synthesizer.enqueue(Reply.stream(["Canberra is Australia's capital (since 1908)."]))

        log_in(page, live_stack.url)
        page.goto(live_stack.url + kit.conversation.get_absolute_url())
        page.fill("#id_content", "What is the capital of Australia, and for how long?")
        page.click(".composer button[type=submit]")

        # The steps appear in the seat's column while it works.
        steps = page.locator(".seats .answer").first.locator(".tool-step")
        steps.first.wait_for(state="attached", timeout=60_000)
        page.locator(".run[data-status=done]").wait_for(timeout=60_000)
        page.click(".how > summary")
        column = page.locator(".seats .answer").first
        column.locator(".tool-steps > summary").click()
        rows = column.locator(".tool-step").all_inner_texts()
        assert len(rows) == 3
        assert rows[0].startswith("🔎") and "→ 2 results" in rows[0]
        assert rows[1].startswith("📄") and "fetched 127.0.0.1/canberra" in rows[1]
        assert rows[2].startswith("▶") and "→ 118" in rows[2]  # really ran, in the sandbox
        links = column.locator(".sources a")
        assert links.first.get_attribute("href") == page_url
        assert "Canberra facts" in page.locator(".run-sources").inner_text()
        assert page.locator(".seats .answer").nth(1).locator(".tool-step").count() == 0
        run = Run.objects.get(message__conversation=kit.conversation)
        assert [s["name"] for s in run.seat_answers[0].tool_steps] == [
            "web_search",
            "web_fetch",
            "run_python",
        ]
        SCREENSHOTS.mkdir(exist_ok=True)
        column.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "seat-tools-desktop.png"), full_page=True)

        phone_page = on_a_phone(browser, page)
        phone_page.click(".how > summary")
        phone_page.locator(".tool-steps > summary").first.click()
        phone_page.locator(".tool-step").first.scroll_into_view_if_needed()
        phone_page.screenshot(path=str(SCREENSHOTS / "seat-tools-phone.png"))
        assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
        phone_page.context.close()

        page.goto(f"{live_stack.url}/runs/{run.pk}/trace/")
        assert page.locator(".trace .seg.tool").count() == 3  # each call on the timeline
    finally:
        kit.close()

"""A route panel built in the browser without typing JSON, run in the chatroom on
scripted upstreams: the decision card shows where the question went, on a desktop
and on a phone. Screenshots go to docs/screenshots/ (the docs show them)."""

from pathlib import Path

import pytest

from chat.models import Run
from panels.models import CatalogModel, Panel
from tests.conftest import ARTIFACTS, log_in, on_a_phone
from tests.pipeline_kit import GOOD_ANALYSIS, ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def kit(live_stack):
    kit = ScriptedPanel(seats=3, router=True)  # its upstreams and catalog models
    kit.router.default = Reply.stream(['{"category": "factual", "confidence": 0.9}'])
    kit.seats[0].default = Reply.stream(["def f(): pass"])
    kit.seats[1].default = Reply.stream(["Canberra ", "is the capital."], delay=0.2)
    kit.seats[2].default = Reply.stream(["Canberra, ", "since 1913."], delay=0.2)
    kit.judge.default = analysis_reply({**GOOD_ANALYSIS, "scores": GOOD_ANALYSIS["scores"][:2]})
    kit.synthesizer.default = Reply.stream(["Canberra ", "is Australia's ", "capital."])
    yield kit
    kit.close()


def _pk(model_id: str) -> str:
    return str(CatalogModel.objects.get(model_id=model_id).pk)


def test_build_a_route_panel_and_see_where_the_question_went(live_stack, kit, page, browser):
    base = live_stack.url
    log_in(page, base)

    page.goto(f"{base}/panels/new/")
    page.fill("#id_name", "Geography router")
    page.select_option("#id_strategy", "route")
    assert page.locator("[data-strategy=route]").is_visible()
    assert not page.locator("[data-strategy=gate]").is_visible()  # only the chosen settings
    page.select_option("#id_router", _pk("router"))
    page.click("[data-role=add-seat]")
    page.click("[data-role=add-seat]")
    for i, tags in enumerate(["code", "factual", "factual"]):
        page.select_option(f"#id_seats-{i}-model", _pk(f"seat-{i}"))
        page.fill(f"#id_seats-{i}-tags", tags)
    page.select_option("#id_judge", _pk("judge"))
    page.select_option("#id_synthesizer", _pk("synth"))
    page.screenshot(path=str(ARTIFACTS / "route-builder.png"), full_page=True)
    page.click("button:has-text('Save panel')")
    page.wait_for_url(f"{base}/p/*/")
    panel = Panel.objects.get(name="Geography router")
    assert panel.strategy == "route"
    tags = [s.tags for s in panel.seats.order_by("position")]
    assert tags == [["code"], ["factual"], ["factual"]]

    page.click("button:has-text('Use in chat')")
    page.wait_for_url(f"{base}/c/*/")
    page.fill("#id_content", "What is the capital of Australia?")
    page.click(".composer button[type=submit]")
    card = page.locator(".decision-card.decision-route")
    card.wait_for(timeout=60_000)
    assert "Routed to factual experts (confidence 0.90)" in card.inner_text()
    page.locator(".run[data-status=done]").wait_for(timeout=60_000)
    assert "saved 1 call" in page.locator(".decision-card").first.inner_text()
    assert page.locator(".answer-synthesizer [data-role=body]").inner_text().startswith("Canberra")
    run = Run.objects.get(message__conversation__panel=panel)
    assert [a.status for a in run.seat_answers] == ["skipped", "done", "done"]
    assert len(kit.seats[0].requests) == 0
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "decision-route-desktop.png"))
    page.click(".how > summary")
    page.screenshot(path=str(SCREENSHOTS / "decision-route-how-desktop.png"), full_page=True)

    phone_page = on_a_phone(browser, page)
    phone_page.locator(".decision-card").first.wait_for()
    phone_page.screenshot(path=str(SCREENSHOTS / "decision-route-phone.png"))
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.context.close()

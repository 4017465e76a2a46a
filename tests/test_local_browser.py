"""A person in headless Chromium: sign up, ask, watch the answer stream, reload
mid-answer and see it continue, and read a formula the model wrote in LaTeX typeset
by KaTeX. Everything real: Daphne, the Celery worker, Redis and the bundled Qwen model."""

import pytest
from django.contrib.auth import get_user_model

from chat.models import Answer
from panels.catalog import sync_site_providers
from panels.models import CatalogModel, Panel, Seat
from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = [
    pytest.mark.stack,
    pytest.mark.browser,
    pytest.mark.models,
    pytest.mark.django_db(transaction=True),
]

QWEN = "Qwen2.5-Coder 0.5B Instruct (local)"


def sign_up(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("form button[type=submit]:has-text('Sign up')")
    page.wait_for_url(f"{base}/")


def test_sign_up_ask_and_watch_the_answer_stream(live_stack, page):
    ARTIFACTS.mkdir(exist_ok=True)
    sign_up(page, live_stack.url, "alice")
    page.select_option("#id_answerer", label=QWEN)
    page.fill("#id_content", "What is the capital of Australia?")
    page.click(".composer button[type=submit]")
    page.wait_for_url("**/c/*/")
    answer = page.locator(".answer").first
    answer.and_(page.locator("[data-status=done]")).wait_for()
    assert answer.locator("[data-role=body]").inner_text().strip()
    frames = page.evaluate("window.__frames")
    assert frames[0]["type"] == "snapshot"
    deltas = [f for f in frames if f["type"] == "answer.delta"]
    done = [f for f in frames if f["type"] == "answer.done"]
    assert deltas and done, "the answer must arrive as streamed deltas, then done"
    page.screenshot(path=str(ARTIFACTS / "chat-done.png"))


MID_ANSWER = """() => {
  const el = [...document.querySelectorAll('.answer .live-text')].pop();
  const runs = document.querySelectorAll('.run');
  const last = runs[runs.length - 1];
  return (el && el.textContent.length > 40) || (last && last.dataset.status === 'done');
}"""


def test_reload_mid_answer_shows_what_arrived_and_continues(live_stack, page):
    sign_up(page, live_stack.url, "bob")
    page.select_option("#id_answerer", label=QWEN)
    # A long answer the coder model always writes (a story it sometimes refused in one
    # short line, which then ended before any reload could catch it mid-stream).
    page.fill("#id_content", "Count from 1 to 300, one number per line.")
    page.click(".composer button[type=submit]")
    page.wait_for_url("**/c/*/")
    live = page.locator(".answer .live-text")
    # A real model on a busy machine may finish before the page has connected: then
    # ask again (each answer takes a few seconds), until one is caught mid-stream.
    for attempt in range(3):
        page.wait_for_function(MID_ANSWER)
        if live.count():
            break
        page.fill("#id_content", f"Count from 1 to 300 again ({attempt + 2}), one per line.")
        page.click(".composer button[type=submit]")
        page.wait_for_function(f"() => document.querySelectorAll('.run').length === {attempt + 2}")
    else:
        pytest.fail("three answers finished before the page saw any of them stream")
    before = live.last.inner_text()
    page.reload()
    # The snapshot restores what had arrived, then the stream goes on from there.
    page.wait_for_function(
        "(before) => {"
        "  const run = [...document.querySelectorAll('.run')].pop();"
        "  const el = run && run.querySelector('.live-text');"
        "  return (run && run.dataset.status === 'done')"
        "    || (el && el.textContent.length > before.length);"
        "}",
        arg=before,
    )
    last_run = page.locator(".run").last
    if last_run.get_attribute("data-status") != "done":
        assert last_run.locator(".live-text").inner_text().startswith(before.rstrip()[:40])
        page.screenshot(path=str(ARTIFACTS / "chat-resumed.png"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.run')].pop().dataset.status === 'done'"
    )
    saved = Answer.objects.filter(run__message__conversation__owner__username="bob").last()
    assert saved.status == Answer.Status.DONE
    assert saved.text.startswith(before.rstrip()[:40]) and len(saved.text) > len(before)


def test_phone_width_layout(live_stack, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    sign_up(page, live_stack.url, "charlie")
    page.screenshot(path=str(ARTIFACTS / "phone-home.png"))
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_the_local_panel_answers_with_real_models_in_the_browser(live_stack, page):
    """The Local preset end to end: the real 1.5B answers and draws more candidates
    (its strategy, verify, chosen by measurement: docs/QUALITY.md); the decision card
    says which check chose the answer, and the answer is there as a candidate wrote it."""
    sign_up(page, live_stack.url, "dora")
    assert "Local" in page.locator("#id_answerer option:checked").inner_text()
    page.fill("#id_content", "Is 391 a prime number?")
    page.click(".composer button[type=submit]")
    page.wait_for_url("**/c/*/")
    page.locator(".run[data-status=done], .run[data-status=failed]").wait_for(timeout=300_000)
    run = page.locator(".run").first
    assert run.get_attribute("data-status") == "done", run.inner_text()
    final = page.locator(".answer-synthesizer [data-role=body]").inner_text().strip()
    assert final
    card = page.locator(".decision-card.decision-verify")
    assert card.count() == 1
    page.click(".how > summary")
    # The seat's own answer and its candidates, each in a column of its own.
    columns = page.locator(".seats .answer[data-status=done]")
    assert columns.count() >= 3, page.locator(".seats").inner_text()
    page.screenshot(path=str(ARTIFACTS / "local-panel-done.png"), full_page=True)


def test_a_local_answer_in_latex_renders_as_katex(live_stack, page):
    """The 0.5B's own LaTeX, typeset in the room: the formula it writes (the same each
    time at temperature 0, e.g. `$$x = \\frac{-b \\pm …}{2a}$$`) becomes KaTeX markup,
    and each typeset piece is TeX from the saved answer, not from a script. A panel of
    that one seat, capped at 64 tokens, keeps it to a few seconds."""
    sign_up(page, live_stack.url, "emmy")
    sync_site_providers()  # a flushed test database has lost the bundled models' entries
    panel = Panel.objects.create(
        slug="formula", name="Formula", owner=get_user_model().objects.get(username="emmy")
    )
    qwen = CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")
    Seat.objects.create(panel=panel, model=qwen, temperature=0, max_tokens=64)
    page.goto(f"{live_stack.url}/")
    page.select_option("#id_answerer", value=f"panel:{panel.pk}")
    page.fill("#id_content", "Reply with only the quadratic formula in LaTeX, between $$ and $$.")
    page.click(".composer button[type=submit]")
    page.wait_for_url("**/c/*/")
    # The finished run's redraw gives the answer its Markdown (the copy button's).
    answer = page.locator(".run[data-status=done] .answer[data-markdown]")
    answer.wait_for(timeout=120_000)
    saved = Answer.objects.get(run__message__conversation__owner__username="emmy")
    assert answer.get_attribute("data-markdown") == saved.text
    body = answer.locator("[data-role=body]")
    body.locator(".math[data-rendered] .katex").first.wait_for()
    typeset = body.locator(".math[data-rendered]:not(.math-error)")
    assert typeset.count() >= 1, saved.text
    for i in range(typeset.count()):
        assert typeset.nth(i).locator(".katex").count() == 1
        assert typeset.nth(i).get_attribute("data-tex").strip() in saved.text
    page.screenshot(path=str(ARTIFACTS / "local-latex.png"))

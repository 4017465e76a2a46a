"""Reading answers in Chromium: a local-model-style answer's LaTeX typeset by KaTeX
(TeX it cannot parse left as source), copy buttons on a code block and on an answer
(the clipboard read back), export as Markdown and as JSON from the conversation's menu
(every seat in both downloads), durations in human units, the "how it was made" line,
and a tool step shown as it starts (a fetch held back until its running row is seen).
Screenshots of the conversation, its copy confirmations and its export menu at desktop
and phone widths go to docs/screenshots/."""

import html
import json
import threading
from pathlib import Path

import pytest

from chat.models import Answer, Message, Run
from tests.conftest import log_in
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CLIPBOARD = ["clipboard-read", "clipboard-write"]

# As the bundled Qwen coders answer the bat-and-ball question: brackets and parentheses
# whose backslashes were lost, a \boxed{}, dollars, a code block, and TeX KaTeX refuses.
FINAL = """Let the ball cost $b$ dollars. The bat costs $b + 1.00$, so

[ b + (b + 1.00) = 1.10 ]

[ b = \\frac{1.10 - 1.00}{2} = 0.05 ]

The ball costs (\\boxed{0.05}) dollars.

```python
def ball(total, difference):
    return (total - difference) / 2
```

A typo stays readable: $\\frac{1}{x$ and $\\href{javascript:alert(1)}{click}$."""
CODE = "def ball(total, difference):\n    return (total - difference) / 2\n"


def new_page(browser, errors, **options):
    context = browser.new_context(permissions=CLIPBOARD, **options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    return page


@pytest.fixture
def kit(live_stack):
    kit = ScriptedPanel(seats=2, tools=["web_fetch"])
    yield kit
    kit.close()


def saved_run(kit) -> Run:
    """A finished fusion run written through the ORM, as a worker would leave it."""
    run = Run.objects.create(
        message=Message.objects.create(conversation=kit.conversation, content="Bat and ball?"),
        panel=kit.panel,
        config={"judge": {"model_id": "judge"}},
        status=Run.Status.DONE,
        stage_ms={"panel": 32911, "judging": 850, "synthesizing": 91239, "total": 125000},
    )
    for position, text in enumerate(["The ball: $0.05$.", "It is (\\boxed{0.05})."]):
        Answer.objects.create(
            run=run,
            position=position,
            model_key=f"seat-{position}",
            model_name=f"Qwen coder {position}",
            status="done",
            text=text,
            first_token_ms=850,
            latency_ms=32911,
            input_tokens=40,
            output_tokens=12,
        )
    Answer.objects.create(run=run, role="judge", position=2, status="done", text="{}")
    Answer.objects.create(
        run=run,
        role="synthesizer",
        position=3,
        model_name="Qwen coder 1.5B",
        status="done",
        text=FINAL,
        first_token_ms=1204,
        latency_ms=125000,
    )
    return run


def test_math_copy_and_durations(live_stack, kit, browser):
    errors: list[str] = []
    page = new_page(browser, errors, viewport={"width": 1280, "height": 900})
    saved_run(kit)
    log_in(page, live_stack.url)
    page.goto(live_stack.url + kit.conversation.get_absolute_url())
    final = page.locator(".answer-synthesizer")

    # KaTeX typesets every piece of math; the brackets alone on their lines as display.
    final.locator(".math[data-rendered] .katex").first.wait_for()
    page.wait_for_function(
        "() => !document.querySelector('.answer-synthesizer .math:not([data-rendered])')"
    )
    assert final.locator(".katex-display").count() == 2
    assert final.locator(".katex .mfrac").count() == 1  # \frac, typeset
    assert final.locator(".katex .fbox").count() == 1
    # TeX KaTeX cannot parse, or may not trust, is shown as its source: no link, no error.
    refused = final.locator(".math-error")
    assert refused.count() == 1 and "\\frac{1}{x" in refused.inner_text()
    assert final.locator("a").count() == 0  # \href refused (trust: false), shown as TeX
    assert "\\href" in final.locator(".math").last.inner_text()
    final.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "reading-math-desktop.png"))
    # Seats' math too, in the "how it was made" section.
    page.click(".how > summary")
    assert page.locator(".seats .katex").count() == 2

    # A code block's copy button copies the code; an answer's, its Markdown. Both are
    # buttons in the tab order, and a screen reader hears the confirmation.
    code_button = final.locator(".code-block .copy-button")
    assert code_button.get_attribute("aria-label") == "Copy the code"
    code_button.click()
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    announcer = page.locator("[data-role=copy-announcer]")
    assert announcer.get_attribute("aria-live") == "polite"
    assert announcer.inner_text() == "Copied the code to the clipboard."
    answer_button = final.locator(".answer-head .copy-button")
    answer_button.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-role=copy-announcer]')"
        ".textContent.includes('the answer')"
    )
    assert page.evaluate("navigator.clipboard.readText()") == FINAL
    # Both buttons still say "Copied" (each does for 2 s): the docs' picture of copying.
    page.screenshot(path=str(SCREENSHOTS / "copy-desktop.png"))
    assert page.locator(".seats .answer-head .copy-button").count() == 2

    # Durations in human units, from the page and from the conversation's script alike.
    stats = final.locator(".answer-stats").inner_text()
    assert "first token 1.2 s" in stats and "total 2 min 5 s" in stats
    assert "2 min 5 s" in page.locator(".run-totals").inner_text()
    assert "(2 models, judge, synthesis)" in page.locator(".how > summary").inner_text()
    said = page.evaluate(
        "async () => { const { formatDuration } = await import('/static/js/format.js');"
        " return [850, 32911, 125000].map(formatDuration); }"
    )
    assert said == ["850 ms", "32.9 s", "2 min 5 s"]

    # Export from the conversation's menu: Markdown and JSON, every seat in each.
    page.click("summary:has-text('Options')")
    page.locator("[data-role=export-md]").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "export-desktop.png"))
    exported = {}
    for fmt in ("md", "json"):
        with page.expect_download() as download:
            page.click(f"[data-role=export-{fmt}]")
        exported[fmt] = Path(download.value.path()).read_text()
    markdown = exported["md"]
    assert "### Seat 1: Qwen coder 0" in markdown and "### Seat 2: Qwen coder 1" in markdown
    assert "The ball: $0.05$." in markdown and "It is (\\boxed{0.05})." in markdown
    assert FINAL in markdown
    run = json.loads(exported["json"])["turns"][0]["run"]
    assert [seat["model"] for seat in run["seats"]] == ["Qwen coder 0", "Qwen coder 1"]
    assert run["final_answer"] == FINAL
    page.click("summary:has-text('Options')")  # closed again
    # The downloaded Markdown as it reads, for the docs.
    file_page = page.context.new_page()
    file_page.set_content(
        '<pre style="white-space: pre-wrap; font: 14px/1.45 monospace; margin: 1.5rem">'
        f"{html.escape(markdown)}</pre>"
    )
    file_page.screenshot(path=str(SCREENSHOTS / "export-markdown-desktop.png"))
    file_page.close()

    phone = new_page(
        browser,
        errors,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        storage_state=page.context.storage_state(),
    )
    phone.goto(page.url)
    phone.locator("[data-conversation][data-snapshots]").wait_for(state="attached")
    phone.locator(".answer-synthesizer .katex-display").first.wait_for()
    phone.locator(".answer-synthesizer .code-block").scroll_into_view_if_needed()
    phone.screenshot(path=str(SCREENSHOTS / "reading-math-phone.png"))
    # Nothing wider than the screen: long math scrolls inside its own box.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.locator(".answer-synthesizer .code-block .copy-button").click()
    phone.locator(".answer-synthesizer .answer-head .copy-button").click()
    phone.wait_for_function(
        "() => document.querySelector('[data-role=copy-announcer]')"
        ".textContent.includes('the answer')"
    )
    phone.screenshot(path=str(SCREENSHOTS / "copy-phone.png"))
    phone.click("summary:has-text('Options')")
    phone.locator("[data-role=export-json]").wait_for()
    phone.screenshot(path=str(SCREENSHOTS / "export-phone.png"))
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390

    # The shared page typesets the same answer.
    page.click("summary:has-text('Options')")
    page.click("button:has-text('Share a read-only link')")
    shared = page.locator("[data-role=share-link]").get_attribute("href")
    page.goto(live_stack.url + shared)
    page.locator(".answer-synthesizer .katex-display").first.wait_for()
    page.context.close()
    phone.context.close()
    assert not errors, f"the page reported errors: {errors}"


def test_a_tool_step_shows_as_it_starts(live_stack, kit, browser):
    errors: list[str] = []
    page = new_page(browser, errors, viewport={"width": 1280, "height": 900})
    # The fetched page is held back until the test has seen the step's running row, so
    # the row is seen however slow the machine is (a tool that merely takes a few
    # seconds finished before the page looked, once, on a loaded CI machine).
    release = threading.Event()

    def held_page():
        release.wait(90)
        yield b"<html><body><p>The ball costs 0.05.</p></body></html>"

    url = f"http://127.0.0.1:{live_stack.pages.port}/ball"
    live_stack.pages.enqueue(Reply(headers={"Content-Type": "text/html"}, chunks=held_page()))
    kit.seats[0].enqueue(
        Reply.tool_calls([("c1", "web_fetch", json.dumps({"url": url}))]),
        Reply.stream(["The ball costs $0.05$."]),
    )
    kit.seats[1].enqueue(Reply.stream(["0.05"]))
    kit.judge.enqueue(analysis_reply({"scores": []}))
    kit.synthesizer.enqueue(Reply.stream(["The ball costs $0.05$."]))
    log_in(page, live_stack.url)
    page.goto(live_stack.url + kit.conversation.get_absolute_url())
    page.fill("#id_content", "Bat and ball: how much is the ball?")
    page.click(".composer button[type=submit]")

    try:
        running = page.locator(".seats .answer").first.locator(".tool-step.running")
        running.wait_for()
        assert "web_fetch" in running.inner_text() and "running" in running.inner_text()
        assert "/ball" in running.inner_text()
        # A page drawn again while the tool runs (a reload; a new stage redraws the thread
        # the same way) shows the row from the snapshot: the server's page has no row yet.
        page.reload()
        running = page.locator(".seats .answer").first.locator(".tool-step.running")
        running.wait_for()
        assert "web_fetch" in running.inner_text() and "/ball" in running.inner_text()
    finally:
        release.set()
    page.locator(".run[data-status=done]").wait_for()
    page.click(".how > summary")
    column = page.locator(".seats .answer").first
    column.locator(".tool-steps > summary").click()
    assert column.locator(".tool-step.running").count() == 0
    assert "fetched 127.0.0.1/ball" in column.locator(".tool-step").inner_text()
    assert page.locator(".answer-synthesizer .katex").count() == 1
    page.context.close()
    assert not errors, f"the page reported errors: {errors}"

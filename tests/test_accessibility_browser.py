"""Accessibility, the theme picker, search and the keyboard in Chromium.

axe-core (tests/vendor/axe.min.js, scripts/update-axe.sh; injected here, never served)
checks the conversation, the trace, the builder (new and edit), the gallery, the
evaluations page and the account page in light and in dark: no serious or critical
violation. Search finds a word only an answer holds and opens at its turn; Esc stops
a live run. Screenshots go to docs/screenshots/.
"""

from pathlib import Path

import pytest
from django.test import Client

from chat.models import Answer, Conversation, Message, Run
from panels.models import Panel
from tests.conftest import checked_page, on_a_phone, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "vendor" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# The pages here are served by Django's test server, which speaks no websocket: the
# conversation's socket fails to connect, and says so in the console.
NO_SOCKET = "WebSocket"


def _logged_in(page, live_server, user, theme: str | None = None):
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"]
    page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    if theme:
        page.add_init_script(f"localStorage.setItem('fusionroom-theme', '{theme}')")


@pytest.fixture
def answered(alice):
    conversation = Conversation.objects.create(owner=alice, title="Marsupials")
    message = Message.objects.create(conversation=conversation, content="Which animal is this?")
    run = Run.objects.create(message=message, status=Run.Status.DONE)
    Answer.objects.create(
        run=run,
        model_name="SmolLM2",
        model_key="local/smollm2",
        status=Answer.Status.DONE,
        text="It is a **quokka**, a small wallaby from Rottnest Island.\n\n"
        "```python\nprint('hi')\n```",
        latency_ms=1200,
    )
    return conversation, message, run


def _serious(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
              .filter((v) => v.impact === "serious" || v.impact === "critical")
              .map((v) => `${v.id} (${v.impact}): ` +
                v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
        }"""
    )
    return found


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_serious_or_critical_violations_on_every_page(
    browser, live_server, alice, answered, theme
):
    conversation, _, run = answered
    Panel.objects.create(owner=alice, slug="mine", name="Mine")
    pages = {
        "new chat": "/",  # the composer, its "May consult the panel" options included
        "conversation": conversation.get_absolute_url(),
        "trace": f"/runs/{run.pk}/trace/",
        "builder (new)": "/panels/new/",
        "builder (edit)": "/p/mine/edit/",
        "gallery": "/panels/gallery/",
        "evaluations": "/evaluations/",
        "account": "/accounts/",
        "search": "/search/?q=quokka",
    }
    problems = {}
    # axe is injected as an inline script, which the site's CSP rightly refuses.
    with checked_page(browser, expected_console_error=NO_SOCKET, bypass_csp=True) as page:
        _logged_in(page, live_server, alice, theme)
        for name, path in pages.items():
            page.goto(live_server.url + path)
            assert page.evaluate("document.documentElement.className") == theme
            if name == "new chat":  # show the consult options, as a single model does
                page.select_option(
                    "#id_answerer", index=page.locator("#id_answerer option").count() - 1
                )
                page.check("#id_consult")
            if found := _serious(page):
                problems[name] = found
    assert not problems, problems


def test_the_theme_picker_remembers_the_choice(browser, live_server, alice, answered):
    with checked_page(browser, expected_console_error=NO_SOCKET) as page:
        _logged_in(page, live_server, alice)
        page.goto(live_server.url + answered[0].get_absolute_url())
        background = "getComputedStyle(document.body).backgroundColor"
        light = page.evaluate(background)
        page.select_option("#theme-picker", "dark")
        assert page.evaluate("document.documentElement.className") == "dark"
        page.reload()
        assert page.evaluate("document.documentElement.className") == "dark"
        assert page.input_value("#theme-picker") == "dark"
        assert page.evaluate(background) != light
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dark-conversation-desktop.png"))
        phone = on_a_phone(browser, page)
        try:
            assert phone.evaluate("document.documentElement.className") == "dark"
            phone.screenshot(path=str(SCREENSHOTS / "dark-conversation-phone.png"))
        finally:
            phone.context.close()
        page.select_option("#theme-picker", "system")
        assert page.evaluate("document.documentElement.className") == ""
        assert page.evaluate("localStorage.getItem('fusionroom-theme')") is None


def test_search_finds_a_word_only_an_answer_holds_and_opens_at_its_turn(
    browser, live_server, alice, answered
):
    conversation, message, _ = answered
    with checked_page(browser, expected_console_error=NO_SOCKET) as page:
        _logged_in(page, live_server, alice)
        page.goto(live_server.url + "/")
        page.fill("#sidebar-q", "rottnest")
        page.press("#sidebar-q", "Enter")
        page.wait_for_selector(".search-hit")
        assert page.inner_text(".search-snippet mark") == "Rottnest"
        page.screenshot(path=str(SCREENSHOTS / "search-desktop.png"))
        phone = on_a_phone(browser, page)
        try:
            phone.screenshot(path=str(SCREENSHOTS / "search-phone.png"))
        finally:
            phone.context.close()
        page.click(".search-hit-title")
        page.wait_for_url(f"**{conversation.get_absolute_url()}#turn-{message.pk}")
        assert page.evaluate("document.querySelector(':target').id") == f"turn-{message.pk}"
        page.goto(live_server.url + "/search/?q=%22%25%00")
        assert "Nothing found" in page.inner_text(".search-results")


def test_escape_stops_a_live_run(browser, live_server, alice):
    conversation = Conversation.objects.create(owner=alice, title="Long one")
    message = Message.objects.create(conversation=conversation, content="Write an essay.")
    run = Run.objects.create(message=message, status=Run.Status.PANEL)
    with checked_page(browser, expected_console_error=NO_SOCKET) as page:
        _logged_in(page, live_server, alice)
        page.goto(live_server.url + conversation.get_absolute_url())
        wait_until(lambda: page.is_visible("[data-role=stop]"), 10, "the Stop button")
        with page.expect_request(lambda r: r.url.endswith(f"/runs/{run.pk}/cancel/")) as stop:
            page.keyboard.press("Escape")
        assert stop.value.method == "POST"

"""The Daphne process serving a browser's websocket dies mid-answer (SIGKILL) and a
new one starts on the same port: the page reconnects naming the last event id it
had, the new process replays what came after it from the conversation's Redis Stream, and
the page ends with the whole answer, nothing doubled, with no snapshot on the way.

Real parts: headless Chromium, Daphne and a Celery worker as processes, Redis, and a
scripted upstream on loopback (tests/scripted_server.py)."""

import signal
import subprocess

import httpx
import pytest
from django.db import connection
from django.test import Client

from chat.models import Conversation, Run
from panels.models import CatalogModel, Provider
from tests.conftest import (
    ARTIFACTS,
    checked_page,
    child_env,
    daphne_command,
    database_url,
    free_port,
    start,
    stop,
    wait_for,
    worker_command,
)
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORDS = [f"w{n} " for n in range(300)]  # 15 s of answer: the kill and restart fit in it
LIVE_TEXT = "document.querySelector('.answer .live-text')?.textContent || ''"
CONVERSATION = "document.querySelector('[data-conversation]').dataset"


class KillableStack:
    """Daphne and one worker, on the test database and Redis; Daphne can be killed
    and started again on its port."""

    def __init__(self):
        self.env = child_env(
            DATABASE_URL=database_url(connection.settings_dict), LOCAL_MODELS_ENABLED="false"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, str] = {}
        self.launch("worker", worker_command(f"resume-{self.port}@localhost"))
        self.start_daphne()

    def launch(self, name: str, command: list[str]) -> None:
        self.starts += 1
        self.logs[name] = f"resume-{name}-{self.starts}"
        self.processes[name] = start(self.logs[name], command, self.env)

    def start_daphne(self) -> None:
        self.launch("daphne", daphne_command(self.port))
        wait_for(
            lambda: httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200,
            "Daphne's /healthz to answer 200",
            90,
            self.watched(),
        )

    def kill_daphne(self) -> None:
        daphne = self.processes.pop("daphne")
        daphne.send_signal(signal.SIGKILL)
        daphne.wait(10)

    def watched(self):
        return [(self.logs[name], process) for name, process in self.processes.items()]


@pytest.fixture
def stack(django_db_setup, django_db_blocker):
    stack = KillableStack()
    try:
        yield stack
    finally:
        stop(stack.watched())


@pytest.fixture
def tab(browser):
    """A page like conftest's, except that the refused connections of the reconnect
    while no Daphne listens are expected console errors; any other error fails."""
    with checked_page(browser, expected_console_error="WebSocket connection to") as page:
        yield page


def test_a_killed_daphne_s_socket_resumes_from_its_last_event_id_with_the_text_whole(
    stack, tab, alice, server
):
    server.enqueue(Reply.stream(WORDS, delay=0.05))
    provider = Provider.objects.create(name="Up resume", base_url=server.base_url)
    model = CatalogModel.objects.create(
        provider=provider, model_id="resume", display_name="Resume", context_length=8192
    )
    conversation = Conversation.objects.create(owner=alice, model=model)
    login = Client()
    login.force_login(alice)
    tab.context.add_cookies(
        [{"name": "sessionid", "value": login.cookies["sessionid"].value, "url": stack.url}]
    )
    tab.goto(stack.url + conversation.get_absolute_url())
    tab.locator("[data-role=connection][data-state=open]").wait_for()
    tab.fill("#id_content", "Tell me a long story.")
    tab.click(".composer button[type=submit]")
    tab.wait_for_function(f"() => ({LIVE_TEXT}).length > 40")

    stack.kill_daphne()
    # What the page had when its server died: its text, and the last event id.
    before = tab.evaluate(f"() => {LIVE_TEXT}")
    last_id = tab.evaluate("() => window.__frames.filter(f => f.event_id).at(-1).event_id")
    frames_before = tab.evaluate("() => window.__frames.length")
    snapshots_before = tab.evaluate(f"() => {CONVERSATION}.snapshots")
    assert "".join(WORDS).startswith(before)
    stack.start_daphne()

    tab.wait_for_function(f"() => {CONVERSATION}.resumes === '1'")
    assert (
        tab.evaluate(f"() => {CONVERSATION}.resumedFrom") == last_id
    )  # the id the server was sent
    # The new process's first word to the page was "resumed", with that id: no
    # snapshot was needed (later ones are the page's own, when a stage changes).
    first = tab.evaluate(f"() => window.__frames[{frames_before}]")
    assert first == {"type": "resumed", "after": last_id}
    tab.wait_for_function(f"() => ({LIVE_TEXT}).length > {len(before)}")
    assert tab.evaluate(f"() => {CONVERSATION}.snapshots") == snapshots_before
    assert Run.objects.get(message__conversation=conversation).status in Run.ACTIVE, (
        "the answer ended before the page resumed: nothing was left to replay live"
    )
    during = tab.evaluate(f"() => {LIVE_TEXT}")
    assert "".join(WORDS).startswith(during)  # nothing doubled, nothing skipped

    tab.locator(".answer[data-status=done]").wait_for()
    assert tab.locator(".answer [data-role=body]").inner_text().split() == "".join(WORDS).split()
    # Every delta reached the page exactly once, over the two sockets, in order.
    seqs = tab.evaluate(
        "() => window.__frames.filter(f => f.type === 'answer.delta').map(f => f.seq)"
    )
    assert seqs == list(range(1, len(seqs) + 1))
    tab.screenshot(path=str(ARTIFACTS / "resume-after-daphne-kill.png"))

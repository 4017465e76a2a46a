"""The fault suite: what a person sees, and what is kept, when a part breaks mid-run.

Every fault is made on the real parts: a Celery worker killed with SIGKILL, the
Redis server stopped and started again, an upstream that answers 429 with
Retry-After, a browser whose websocket is closed fifty times while an answer
streams. The stack is the one `make run` starts — Daphne, Celery workers (two, so
one lives on when the other is killed), Celery beat (which schedules the sweeper)
— on a redis-server of its own, so stopping Redis touches nobody else's data.
Upstream models are scripted servers on loopback (tests/scripted_server.py): real
sockets, real HTTP.

docs/RELIABILITY.md is the table of these guarantees; each row names its test here.

Long on purpose: one fault stack serves every fault, and the file reads as the table of
docs/RELIABILITY.md.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise

import httpx
import pytest
from django.db import connection
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from chat.engine import live
from chat.models import Answer, Conversation, Run
from panels.models import CatalogModel, Provider
from tests.conftest import (
    ARTIFACTS,
    RECORD_FRAMES,
    PrivateRedis,
    child_env,
    daphne_command,
    database_url,
    free_port,
    start,
    stop,
    wait_for,
    worker_command,
)
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.stack, pytest.mark.database, pytest.mark.django_db(transaction=True)]

# Short, so that a lost worker is noticed in seconds: the stack's heartbeat TTL, and
# with it the sweeper's period (a third of it, fusionroom/settings.py).
HEARTBEAT_TTL_S = 3
SWEEP_EVERY_S = HEARTBEAT_TTL_S / 3


@dataclass
class FaultStack:
    url: str
    redis: PrivateRedis
    env: dict
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # process -> its log's name
    starts: int = 0

    def launch(self, process: str, command: list[str]) -> None:
        self.starts += 1
        log = f"fault-{process}-{self.starts}"
        self.processes[process], self.logs[process] = start(log, command, self.env), log

    def start_worker(self, worker: str) -> None:
        """Start (or start again, as a supervisor does) one of the two workers."""
        name = f"{worker}-{self.starts + 1}@localhost"
        self.launch(worker, worker_command(name, "--loglevel", "INFO"))

    def runs_taken(self) -> dict[str, int]:
        """How many runs each worker has received (from its log)."""
        taken = {}
        for worker in WORKERS:
            log = (ARTIFACTS / f"{self.logs[worker]}.log").read_text().splitlines()
            taken[worker] = sum("chat.execute_run[" in line and "received" in line for line in log)
        return taken

    def logged(self, text: str) -> bool:
        """Whether a running process of the stack has written `text` to its log."""
        return any(
            text in (ARTIFACTS / f"{self.logs[name]}.log").read_text() for name in self.processes
        )

    def kill(self, worker: str) -> None:
        process = self.processes.pop(worker)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def watched(self) -> list[tuple[str, subprocess.Popen]]:
        """For wait_for: the processes, named by their logs in test-artifacts/."""
        return [(self.logs[name], process) for name, process in self.processes.items()]

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def wait_healthy(self, timeout: float, what: str) -> None:
        wait_for(self.healthy, what, timeout, self.watched())


WORKERS = ("worker-a", "worker-b")  # two, so one lives on when the other is killed


# Module scope: its beat sweeps the test database every second, which no other
# module's runs may meet. (conftest sorts browser tests last: a whole-suite run
# starts this stack a second time for the browser test.)
@pytest.fixture(scope="module")
def fault_stack(django_db_setup, django_db_blocker):
    private = PrivateRedis("fault-redis")
    private.start()
    env = child_env(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=private.url,
        LOCAL_MODELS_ENABLED="false",  # scripted upstreams only: /healthz skips the models
        RUN_HEARTBEAT_TTL_S=str(HEARTBEAT_TTL_S),
    )
    port = free_port()
    stack = FaultStack(url=f"http://127.0.0.1:{port}", redis=private, env=env)
    schedule = ARTIFACTS / f"fault-beat-{port}"
    try:
        stack.launch("daphne", daphne_command(port))
        beat = ["-m", "celery", "-A", "fusionroom", "beat", "--schedule", str(schedule)]
        stack.launch("beat", [sys.executable, *beat, "--loglevel", "INFO"])
        for worker in WORKERS:
            stack.start_worker(worker)
        stack.wait_healthy(90, "the fault stack's /healthz to answer 200")
        yield stack
    finally:
        stop(stack.watched())
        private.stop()
        for leftover in ARTIFACTS.glob(f"fault-beat-{port}*"):
            leftover.unlink()


# --- a person using the conversation, over HTTP and the websocket ---------------------------


class Visitor:
    """alice in the conversation through Daphne: sends over HTTP, follows over the websocket."""

    def __init__(self, stack: FaultStack, user):
        browser = Client()
        browser.force_login(user)
        self.session = browser.cookies["sessionid"].value
        self.stack = stack
        self.http = httpx.Client(base_url=stack.url, timeout=15)
        self.http.cookies.set("sessionid", self.session)
        home = self.http.get("/")
        assert home.status_code == 200, home.text[:300]
        self.csrf = home.cookies.get("csrftoken") or self.http.cookies["csrftoken"]

    def send(self, conversation: Conversation, text: str) -> int:
        response = self.http.post(
            f"/c/{conversation.pk}/messages/",
            data={"content": text, "csrfmiddlewaretoken": self.csrf},
            headers={"Accept": "application/json", "X-CSRFToken": self.csrf},
        )
        assert response.status_code == 201, response.text[:300]
        return response.json()["run"]

    def conversation_page(self, conversation: Conversation) -> str:
        response = self.http.get(f"/c/{conversation.pk}/")
        assert response.status_code == 200
        return response.text

    @contextmanager
    def following(self, conversation: Conversation):
        """The conversation's websocket, its frames gathered by a thread as they arrive."""
        feed = ConversationFeed(
            self.stack.url.replace("http", "ws") + f"/ws/conversations/{conversation.pk}/",
            {"Cookie": f"sessionid={self.session}", "Origin": self.stack.url},
        )
        try:
            yield feed
        finally:
            feed.close()

    def close(self) -> None:
        self.http.close()


class ConversationFeed:
    def __init__(self, url: str, headers: dict):
        self.frames: list[dict] = []
        self.socket = ws_connect(url, additional_headers=headers, open_timeout=10)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.of_type("snapshot"), "the conversation's snapshot", 10)

    def _read(self) -> None:
        with self.socket:
            try:
                while True:
                    self.frames.append(json.loads(self.socket.recv()))
            except ConnectionClosed:
                pass  # closed by the test, or by the fault under test

    @property
    def closed(self) -> bool:
        return not self._reader.is_alive()

    def of_type(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f.get("type") == kind]

    def close(self) -> None:
        self.socket.close()
        self._reader.join(5)


@pytest.fixture
def visitor(fault_stack, alice):
    visitor = Visitor(fault_stack, alice)
    yield visitor
    visitor.close()


def scripted_conversation(owner, server: ScriptedServer, name: str = "scripted") -> Conversation:
    """A conversation answered by one model alone: the scripted server behind a site provider."""
    provider = Provider.objects.create(name=f"Up {name}", base_url=server.base_url)
    model = CatalogModel.objects.create(
        provider=provider, model_id=name, display_name=name.title(), context_length=8192
    )
    return Conversation.objects.create(owner=owner, model=model)


def run_of(run_id: int) -> Run:
    return Run.objects.get(pk=run_id)


def ended(run_id: int) -> bool:
    return run_of(run_id).status not in Run.ACTIVE


def live_text_of(stack: FaultStack, answer: Answer) -> str:
    client = stack.redis.client()
    try:
        return (client.get(live.text_key(answer.pk)) or b"").decode()
    finally:
        client.close()


def words(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n} " for n in range(count)]


# --- 1. the worker killed mid-answer ------------------------------------------------


def test_a_worker_killed_mid_answer_closes_the_run_keeping_its_text(
    fault_stack, visitor, alice, server
):
    text = words("part", 200)  # 20 s of answer: the kill comes long before its end
    server.enqueue(Reply.stream(text, delay=0.1))
    conversation = scripted_conversation(alice, server)
    live_text = fault_stack.redis.client()
    try:
        with visitor.following(conversation) as feed:
            taken_before = fault_stack.runs_taken()
            run_id = visitor.send(conversation, "Tell me a long story.")
            answer = Answer.objects.get(run_id=run_id)
            wait_for(
                lambda: len(live_text.get(live.text_key(answer.pk)) or b"") > 40,
                "the answer to stream",
                30,
                fault_stack.watched(),
            )
            taken_after = fault_stack.runs_taken()
            (doomed,) = [w for w in WORKERS if taken_after[w] > taken_before[w]]
            fault_stack.kill(doomed)
            killed_at = time.monotonic()
            streamed = live_text.get(live.text_key(answer.pk)).decode()
            assert streamed and "".join(text).startswith(streamed)

            # Nobody runs it now. Its heartbeat lapses within the TTL, and beat's
            # sweeper (run by the other worker) closes it on its next round.
            bound = HEARTBEAT_TTL_S + SWEEP_EVERY_S + 3  # + the sweep task's own trip
            wait_for(lambda: ended(run_id), "the sweeper to close the run", bound + 5)
            closed_after = time.monotonic() - killed_at

            run = run_of(run_id)
            assert run.status == Run.Status.FAILED and run.failure_reason == "worker_lost"
            assert "stopped before it finished" in run.failure_detail
            answer.refresh_from_db()
            assert answer.status == Answer.Status.FAILED
            assert answer.text == streamed  # what had streamed is kept, whole
            assert closed_after <= bound, f"closed {closed_after:.1f} s after the kill"
            assert server.disconnects  # the dead worker's upstream stream is closed

            # The conversation says so: at once over the websocket, and on the page.
            wait_for(lambda: feed.of_type("run.done"), "the conversation to hear of it", 10)
            done = feed.of_type("run.done")[-1]
            assert (done["run"], done["status"]) == (run_id, "failed")
            assert done["failure_reason"] == "worker_lost"
            assert "stopped before it finished" in done["failure_detail"]
        page = visitor.conversation_page(conversation)
        assert "stopped before it finished" in page and streamed.split()[0] in page

        # The supervisor starts the worker again; the next message is answered.
        fault_stack.start_worker(doomed)
        fault_stack.wait_healthy(30, "/healthz with the worker back")
        server.enqueue(Reply.stream(["Back ", "again."]))
        next_run = visitor.send(conversation, "Are you back?")
        wait_for(lambda: ended(next_run), "the next message's run", 30, fault_stack.watched())
        assert run_of(next_run).status == Run.Status.DONE
        assert Answer.objects.get(run_id=next_run).text == "Back again."
    finally:
        live_text.close()


# --- 2. Redis stopped and started again mid-run -------------------------------------


def test_redis_restarted_mid_run_ends_the_run_and_the_stack_recovers(
    fault_stack, visitor, alice, server
):
    text = words("word", 120)  # 12 s of answer: Redis goes away and comes back within it
    server.enqueue(Reply.stream(text, delay=0.1))
    conversation = scripted_conversation(alice, server)
    with visitor.following(conversation) as before:
        run_id = visitor.send(conversation, "Tell me a story while Redis restarts.")
        answer = Answer.objects.get(run_id=run_id)
        live_text = fault_stack.redis.client()
        wait_for(
            lambda: len(live_text.get(live.text_key(answer.pk)) or b"") > 20,
            "the answer to stream",
            30,
            fault_stack.watched(),
        )
        live_text.close()
        fault_stack.redis.stop()  # SIGTERM: it stops as in a restart
        # Down until the run has felt it: its worker finds Redis gone.
        wait_for(
            lambda: fault_stack.logged(f"run {run_id}: Redis unreachable"),
            "the run's worker to find Redis gone",
            10,
            fault_stack.watched(),
        )
        # Back on the same port, empty: no live text, no heartbeats, no queued tasks.
        fault_stack.redis.start()
        # The worker writes the live copy whole again, and a page that (re)connects
        # now is shown the answer from its first word.
        with visitor.following(conversation) as during:
            wait_for(
                lambda: ended(run_id) or during.of_type("answer.delta"),
                "a delta after the restart",
                10,
            )
            (shown,) = during.of_type("snapshot")[0]["runs"]
            live_copy = live_text_of(fault_stack, answer)
        assert shown["status"] == "panel", "the answer ended before Redis came back"
        assert "".join(text).startswith(live_copy) and live_copy.startswith("word0 word1 ")

        statuses = set()

        def run_ended() -> bool:
            statuses.add(run_of(run_id).status)
            return ended(run_id)

        # The run goes on without Redis and ends on its own; every process lives on.
        wait_for(run_ended, "the run to end after Redis came back", 30, fault_stack.watched())
        # The socket that was open when Redis went away is closed by the server (the
        # page then reconnects), or it carries the run's end.
        wait_for(
            lambda: before.closed or before.of_type("run.done"), "the old socket to settle", 10
        )
    run = run_of(run_id)
    assert run.status == Run.Status.DONE, (run.failure_reason, run.failure_detail)
    # Never swept as "worker lost" on the way: its heartbeat came back with Redis.
    assert Run.Status.FAILED not in statuses
    answer.refresh_from_db()
    assert answer.status == Answer.Status.DONE and answer.text == "".join(text)

    # The app reconnects: a page opened now gets the whole answer, /healthz is green.
    with visitor.following(conversation) as after:
        (shown,) = after.of_type("snapshot")[0]["runs"]
        assert shown["status"] == "done" and "word119" in shown["answers"][0]["html"]
    fault_stack.wait_healthy(30, "/healthz to be green again")
    server.enqueue(Reply.stream(["Redis ", "is ", "back."]))
    next_run = visitor.send(conversation, "Is Redis back?")
    wait_for(lambda: ended(next_run), "the next message's run", 30, fault_stack.watched())
    assert run_of(next_run).status == Run.Status.DONE
    assert Answer.objects.get(run_id=next_run).text == "Redis is back."
    assert all(process.poll() is None for process in fault_stack.processes.values())


def test_a_message_whose_queued_task_redis_lost_is_queued_again(
    fault_stack, visitor, alice, server
):
    """Everything restarts at once (a machine rebooted): the message was queued, no
    worker had taken it, and Redis came back empty. The sweeper queues it again."""
    for worker in WORKERS:
        fault_stack.kill(worker)
    server.enqueue(Reply.stream(["Still ", "here."]))
    conversation = scripted_conversation(alice, server)
    run_id = visitor.send(conversation, "Did my message survive?")
    fault_stack.redis.stop()
    fault_stack.redis.start()  # empty: the run's task is gone
    assert run_of(run_id).status == Run.Status.QUEUED
    for worker in WORKERS:
        fault_stack.start_worker(worker)
    # A starting worker sweeps at once; beat sweeps every second.
    wait_for(lambda: ended(run_id), "the run to be queued again", 30, fault_stack.watched())
    assert run_of(run_id).status == Run.Status.DONE
    assert Answer.objects.get(run_id=run_id).text == "Still here."
    assert len(server.requests) == 1  # queued again once, answered once


# --- 3. an upstream 429 storm with Retry-After -------------------------------------


def rate_limited(message: str = "Too many requests") -> Reply:
    return Reply.json(429, {"error": {"message": message}}, headers={"Retry-After": "1"})


def test_a_429_storm_is_waited_out_as_told_and_every_answer_is_whole(fault_stack, visitor, alice):
    # Three conversations at once, each on its own model: two 429s each (as many as the
    # retry budget allows), then the answer. (A third 429 in a row would also cool
    # the model down for 30 s: docs/RELIABILITY.md, "Cooldown".)
    storms = [ScriptedServer().__enter__() for _ in range(3)]
    try:
        texts, conversations = [], []
        for n, server in enumerate(storms):
            texts.append(words(f"r{n}w", 30))
            server.enqueue(rate_limited(), rate_limited(), Reply.stream(texts[-1], delay=0.02))
            conversations.append(scripted_conversation(alice, server, f"storm-{n}"))
        sent_at = time.monotonic()
        run_ids = [
            visitor.send(conversation, "Answer through the storm.")
            for conversation in conversations
        ]
        wait_for(lambda: all(ended(r) for r in run_ids), "the runs", 30, fault_stack.watched())
        took = time.monotonic() - sent_at

        for run_id, server, text in zip(run_ids, storms, texts, strict=True):
            assert run_of(run_id).status == Run.Status.DONE
            answer = Answer.objects.get(run_id=run_id)
            assert answer.text == "".join(text)  # whole: nothing lost, nothing doubled
            outcomes = [(a["outcome"], (a["error"] or {}).get("kind")) for a in answer.attempts]
            assert outcomes == [
                ("failed", "rate_limited"),
                ("failed", "rate_limited"),
                ("answered", None),
            ]
            # The waits are the server's Retry-After, not a backoff of our own ...
            assert [a["waited_s"] for a in answer.attempts] == [0, 1.0, 2.0]
            # ... and really happened between the requests the server received.
            gaps = [b - a for a, b in pairwise(server.request_times)]
            assert len(gaps) == 2 and all(1.0 <= gap < 1.8 for gap in gaps), gaps
        # The three waited at the same time, not one after another.
        firsts = [server.request_times[0] for server in storms]
        assert max(firsts) - min(firsts) < 1.0
        assert took < 10, f"took {took:.1f} s"
    finally:
        for server in storms:
            server.__exit__(None, None, None)


def test_a_429_storm_longer_than_the_retry_budget_fails_the_run_in_words(
    fault_stack, visitor, alice, server
):
    server.default = rate_limited("Slow down")  # every request, for ever
    conversation = scripted_conversation(alice, server, "storm")
    with visitor.following(conversation) as feed:
        sent_at = time.monotonic()
        run_id = visitor.send(conversation, "Answer through an endless storm.")
        wait_for(lambda: ended(run_id), "the run to give up", 20, fault_stack.watched())
        took = time.monotonic() - sent_at
        wait_for(lambda: feed.of_type("run.done"), "the conversation to hear of it", 10)

    run = run_of(run_id)
    answer = Answer.objects.get(run_id=run_id)
    assert run.status == Run.Status.FAILED and run.failure_reason == "all_seats_failed"
    assert "Every seat failed" in run.failure_detail and "rate limiting" in run.failure_detail
    assert answer.error_kind == "rate_limited"
    assert "is rate limiting: Slow down; retry after 1 s" in answer.error
    assert len(server.requests) == len(answer.attempts) == 3  # the budget, then no more
    assert took < 10, f"took {took:.1f} s"
    failed = [e for e in feed.frames if e["type"] == "answer.failed"]
    assert failed and "rate limiting" in failed[-1]["error"]
    assert feed.of_type("run.done")[-1]["status"] == "failed"
    assert "rate limiting" in visitor.conversation_page(conversation)


# --- 4. a browser reconnect storm -----------------------------------------------------

# Keeps every socket the page opens, so the test can close the live one as a flaky
# network would (conversation.js then reconnects after 0.5 s and resumes from its last event).
RECORD_SOCKETS = """
window.__sockets = [];
const PageWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new PageWebSocket(...args);
  window.__sockets.push(socket);
  return socket;
};
window.WebSocket.prototype = PageWebSocket.prototype;
Object.assign(window.WebSocket, PageWebSocket);
"""
TABS = 5
RECONNECTS = 50  # in all: ten per tab, the tabs' reconnects interleaved
LIVE_TEXT = "document.querySelector('.answer .live-text')?.textContent || ''"


def open_tab(context, url: str):
    tab = context.new_page()
    tab.add_init_script(RECORD_FRAMES)  # as the page fixture does
    tab.add_init_script(RECORD_SOCKETS)
    tab.set_default_timeout(30_000)
    tab.goto(url)
    tab.wait_for_function("() => window.__sockets.at(-1)?.readyState === WebSocket.OPEN")
    return tab


def drop_socket(tab) -> int:
    """Close the tab's live socket; returns how many sockets it had opened."""
    return tab.evaluate(
        "() => { window.__sockets.at(-1).close(); return window.__sockets.length; }"
    )


@pytest.mark.browser
def test_fifty_reconnects_while_an_answer_streams_lose_no_text(
    fault_stack, visitor, alice, server, page
):
    text = words("w", 400)  # 20 s of answer: the storm takes a good part of it
    full = "".join(text)
    server.enqueue(Reply.stream(text, delay=0.05))
    conversation = scripted_conversation(alice, server)
    url = fault_stack.url + conversation.get_absolute_url()
    session = {"name": "sessionid", "value": visitor.session, "url": fault_stack.url}
    page.context.add_cookies([session])
    page.add_init_script(RECORD_SOCKETS)
    page.goto(url)
    page.wait_for_function("() => window.__sockets.at(-1)?.readyState === WebSocket.OPEN")
    tabs = [page] + [open_tab(page.context, url) for _ in range(TABS - 1)]

    run_id = visitor.send(conversation, "Tell me a very long story.")
    for tab in tabs:
        tab.wait_for_function(f"() => ({LIVE_TEXT}).length > 0")

    reconnects = 0
    while reconnects < RECONNECTS:
        opened = [drop_socket(tab) for tab in tabs]
        for tab, count in zip(tabs, opened, strict=True):
            tab.wait_for_function(
                f"() => window.__sockets.length > {count}"
                " && window.__sockets.at(-1).readyState === WebSocket.OPEN"
            )
        reconnects += len(tabs)
        # After every round, each tab shows a beginning of the answer: nothing
        # doubled, nothing skipped, whichever deltas fell between two sockets.
        for tab in tabs:
            shown = tab.evaluate(f"() => {LIVE_TEXT}")
            assert full.startswith(shown), f"a tab shows text the answer does not have: {shown!r}"
    assert run_of(run_id).status in Run.ACTIVE, "the answer ended before the storm did"

    wait_for(lambda: ended(run_id), "the answer to end", 60)
    for tab in tabs:
        tab.locator(".answer[data-status=done]").wait_for()
        assert tab.locator(".answer [data-role=body]").inner_text().split() == full.split()
        # Each socket was made whole on opening: a snapshot (the first connect) or a
        # resume from the last event id the tab had (a reconnect), never neither.
        openings = tab.evaluate(
            "() => window.__frames.filter(f => ['snapshot', 'resumed'].includes(f.type)).length"
        )
        assert openings >= RECONNECTS // TABS + 1
        assert tab.evaluate("() => window.__frames.some(f => f.type === 'resumed')")
    page.screenshot(path=str(ARTIFACTS / "fault-reconnect-storm.png"))

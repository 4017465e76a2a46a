"""Shared fixtures: named users, and the live stack made of real parts.

The live stack is what `make run` starts, against the test database: a Daphne
server and a Celery worker as subprocesses, the bundled llama.cpp model servers,
and Redis (a separate database number from development's).

Long on purpose: the live stack's fixtures (Redis, model servers, Daphne, workers, the
browser) share their start and stop helpers.
"""

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model

from panels import local_models

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct-horse-battery-9"


# Named users: alice owns things, bob is another signed-in user, charlie is refused.
@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password=PASSWORD)


@pytest.fixture
def charlie(db):
    return get_user_model().objects.create_user("charlie", password=PASSWORD)


@pytest.fixture
def smollm2(db):
    """The bundled SmolLM2's catalog entry (a flushed test database loses it)."""
    from panels.catalog import sync_site_providers
    from panels.models import CatalogModel

    sync_site_providers()
    return CatalogModel.objects.get(model_id="smollm2-135m")


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Record every websocket frame the page receives, to prove streaming happened.
RECORD_FRAMES = """
window.__frames = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeWebSocket(...args);
  socket.addEventListener("message", (m) => window.__frames.push(JSON.parse(m.data)));
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
Object.assign(window.WebSocket, NativeWebSocket);
"""


# Module scope: Playwright's sync API holds an event loop on the main thread
# while it runs, which async tests elsewhere cannot share.
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django's guard
    # against ORM calls from async code would then refuse the test's own queries.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@contextmanager
def checked_page(browser, expected_console_error: str = "", **options):
    """A desktop-sized page that records the conversation's frames (`window.__frames`) and,
    when the test is done, fails it for any error the page reported: an uncaught
    exception, or a console error other than one containing `expected_console_error`.
    `options` go to the browser context (axe's test injects its script past the CSP
    with `bypass_csp=True`)."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **options})
    page = context.new_page()
    page.add_init_script(RECORD_FRAMES)
    page.set_default_timeout(60_000)
    errors: list[str] = []

    def on_console(message) -> None:
        expected = expected_console_error and expected_console_error in message.text
        if message.type == "error" and not expected:
            errors.append(message.text)

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", on_console)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page reported errors: {errors}"


@pytest.fixture
def page(browser):
    with checked_page(browser) as page:
        yield page


def on_a_phone(browser, page):
    """`page`'s address in a phone-sized tab of the same session (close its context)."""
    phone = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        storage_state=page.context.storage_state(),
    )
    phone_page = phone.new_page()
    phone_page.goto(page.url)
    return phone_page


# What a test that reaches the database asks for, directly or through its fixtures.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "django_db_blocker"}


def reaches_the_database(item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(
        DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def pytest_collection_modifyitems(config, items):
    """Browser tests last: they are the slowest, and Playwright's event loop must
    not outlive them into async tests. On PostgreSQL, only the tests that reach the
    database: the pass is about the database, the rest ran on SQLite already (and
    pytest-django refuses the database to a test that did not ask for it)."""
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        kept = [item for item in items if reaches_the_database(item)]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture
def made_cgroups(monkeypatch):
    """The sandbox cgroups this test's runs made, in order: a test checks its own
    runs' cgroups, never every one on the host (another pass may be running)."""
    from chat.engine.tools import cgroup

    made: list = []
    real = cgroup.RunCgroup.create.__func__

    def recording(cls, processes: int, memory_bytes: int):
        run = real(cls, processes, memory_bytes)
        if run is not None:
            made.append(run)
        return run

    monkeypatch.setattr(cgroup.RunCgroup, "create", classmethod(recording))
    return made


def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "fusionroom.settings_test"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


T = TypeVar("T")


# Tests wait on conditions, never on a guessed time: a sleep long enough on a quiet
# machine is too short on a busy one, and needlessly long everywhere else.
def wait_until(predicate: Callable[[], T], timeout: float, what: str, every=0.02) -> T:
    """`predicate()`'s first true value, as soon as there is one; fails naming `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (met := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return met


async def until(
    predicate: Callable[[], object | Awaitable[object]], timeout: float, what: str, every=0.01
) -> object:
    """`wait_until` for async tests: the loop runs while it waits. `predicate` may be
    a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        met = predicate()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return met
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


def wait_for(check, what: str, timeout: float, processes=()) -> None:
    """`wait_until` for a check on subprocesses: fails at once when one of them
    exits, and a check that raises (a server not up yet) counts as not yet."""

    def met() -> bool:
        for name, proc in processes:
            if proc.poll() is not None:
                pytest.fail(
                    f"{name} exited with {proc.returncode} while waiting for {what}; "
                    f"see {ARTIFACTS}/{name}.log"
                )
        try:
            return bool(check())
        except Exception:
            return False

    wait_until(met, timeout, what, every=0.25)


def start(name: str, command: list[str], env: dict) -> subprocess.Popen:
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / f"{name}.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(processes) -> None:
    for _, proc in processes:
        proc.terminate()
    for _, proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def worker_command(name: str, *extra: str) -> list[str]:
    """A Celery worker as the Procfile starts it (threads pool), named `name`."""
    command = "celery -A fusionroom worker --pool threads --concurrency 8 --without-gossip"
    return [sys.executable, "-m", *command.split(), "--without-mingle", "-n", name, *extra]


def daphne_command(port: int) -> list[str]:
    command = f"daphne -b 127.0.0.1 -p {port} fusionroom.asgi:application"
    return [sys.executable, "-m", *command.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of a test's own (Debian's binary) on a free port, keeping
    nothing on disk: it may be stopped and started again without touching anyone
    else's data, and comes back empty, as a Redis without persistence does."""

    def __init__(self, name: str):
        self.name = name  # its logs: test-artifacts/<name>-<n>.log, one per start
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        name = f"{self.name}-{self.starts}"
        self.process = start(name, command, dict(os.environ))
        wait_for(self.answers, f"redis-server on port {self.port}", 20, [(name, self.process)])

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            stop([("redis", self.process)])
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


@pytest.fixture(scope="session")
def redis_ready():
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis does not answer at {settings.REDIS_URL} ({exc}); "
            "run scripts/ensure-redis.sh or `make test`, which starts it."
        )
    client.flushdb()  # the test database number only; never development's
    client.close()


def _model_answers(model) -> bool:
    return httpx.get(f"{model.base_url}/models", timeout=1).status_code == 200


@pytest.fixture(scope="session")
def model_servers():
    """The bundled models, served on the test ports (started unless already up)."""
    processes = []
    for model in local_models.enabled():
        try:
            if _model_answers(model):
                continue
        except httpx.HTTPError:
            pass
        name = f"model-{model.key}"
        command = [sys.executable, "manage.py", "serve_model", model.key]
        processes.append((name, start(name, command, child_env())))
    try:
        for model in local_models.enabled():
            wait_for(lambda m=model: _model_answers(m), f"{model.key} to serve", 180, processes)
        yield local_models.enabled()
    finally:
        stop(processes)  # also when one failed to start: its siblings are not left behind


def database_url(settings_dict: dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@dataclass
class Stack:
    url: str
    worker_name: str
    search: object  # a SearXNG-shaped scripted server the worker's web_search uses
    pages: object  # a scripted web server the worker's web_fetch may reach


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, redis_ready, model_servers):
    from django.db import connection

    from tests.scripted_server import ScriptedServer

    search, pages = ScriptedServer(), ScriptedServer()
    search.__enter__(), pages.__enter__()
    env = child_env(
        DATABASE_URL=database_url(connection.settings_dict),
        SEARCH_BACKEND="searxng",
        SEARXNG_URL=search.base_url.removesuffix("/v1"),
        TOOLS_PRIVATE_HOSTS=f"127.0.0.1:{pages.port}",
        # The browser tests sign up as a person does on `make run` (DEBUG on: open).
        SIGNUP="open",
    )
    port = free_port()
    worker_name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    processes = [
        (
            "worker",
            start("worker", worker_command(worker_name, "--loglevel", "INFO"), env),
        ),
        (
            "daphne",
            start("daphne", daphne_command(port), env),
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        # /healthz is green only when the database, Redis, the worker and every
        # model server answer: the stack is then whole.
        wait_for(
            lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200,
            "the live stack's /healthz to answer 200",
            90,
            processes,
        )
        yield Stack(url=url, worker_name=worker_name, search=search, pages=pages)
    finally:
        stop(processes)
        search.__exit__(None, None, None)
        pages.__exit__(None, None, None)


@pytest.fixture
def server():
    """A scripted OpenAI-compatible upstream on loopback (tests/scripted_server.py)."""
    from tests.scripted_server import ScriptedServer

    with ScriptedServer() as s:
        yield s


@pytest.fixture(name="redis")
async def async_redis(redis_ready):
    """An asyncio client of the test Redis database, emptied before and after
    (cooldowns and live text start clean)."""
    from chat.engine import live

    client = live.redis_client()
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def api_key(live_stack, smollm2, alice):
    """A key of alice's for the live stack's API, in a fresh rate-limit minute."""
    from chat.api.keys import create_key

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"fr:ratelimit:user:{alice.pk}")
    client.close()
    return create_key(alice, "tests")[1]


@pytest.fixture
def openai_client(live_stack, api_key):
    """The official `openai` client on the live stack's /v1, with alice's key."""
    import openai

    return openai.OpenAI(
        base_url=f"{live_stack.url}/v1", api_key=api_key, max_retries=0, timeout=300
    )


@pytest.fixture(autouse=True)
def fresh_run_rate():
    """Every test starts a fresh minute of runs: user ids repeat across tests (a
    rolled-back test gives its ids back), and the runs-a-minute counter in Redis
    (chat/engine/admission.py) would otherwise carry one test's runs into the next."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    try:
        keys = list(client.scan_iter("fr:runrate:*"))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test that needs Redis says so through redis_ready
    finally:
        client.close()


def log_in(page, base: str, username: str = "alice") -> None:
    """Log a browser page in through the login form, as a person does (the test users'
    password is the fixtures' own)."""
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-long-enough-1")
    page.click("form button:has-text('Log in')")
    page.wait_for_url(f"{base}/")

"""What the benchmarks share: the environment they run Fusion Room in, the scripted
upstream, the site's rows, starting and stopping the real processes, and reading
their CPU time and memory from /proc.

A benchmark calls `configure()` first: it sets the environment before Django
reads it.

- Redis: `BENCH_REDIS_URL` (default database 14), flushed at the start; never the
  `REDIS_URL` of the shell, which may hold a real site's queue.
- Database: a SQLite file in a fresh temporary folder, or `BENCH_DATABASE_URL`.
- Limits: the site's per-user limits (runs a minute, runs at once, budgets) are
  raised out of the way: the benchmark measures the pipeline, not admission.
"""

import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.gettempdir())  # configure() gives each run a fresh folder
DOC = ROOT / "docs" / "PERFORMANCE.md"
ENV: dict[str, str] = {}


def configure() -> None:
    """The environment Fusion Room runs in for a benchmark: set before anything
    of Django is imported (its settings read it once), and passed to every
    process the benchmark starts."""
    global DATA_DIR
    DATA_DIR = Path(tempfile.mkdtemp(prefix="fusionroom-bench-"))
    ENV.update(
        {
            "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
            "DEBUG": "false",
            "SECRET_KEY": "benchmark-secret-key-benchmark-secret-key-0123456789",
            "FUSIONROOM_DATA_DIR": str(DATA_DIR),
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
            "LOCAL_MODELS_ENABLED": "false",
            "CALL_MAX_RETRIES": "0",
            "LOG_LEVEL": "WARNING",
            "RUNS_PER_MINUTE": "1000000",
            "CONCURRENT_RUNS": "1000000",
            "API_RATE_LIMIT_PER_MINUTE": "1000000",
            "RUN_BUDGET_USD": "1000000",
            "DAILY_BUDGET_USD": "1000000",
            "MONTHLY_BUDGET_USD": "1000000",
        }
    )
    if os.environ.get("BENCH_DATABASE_URL"):  # e.g. postgres://postgres@127.0.0.1:5432/bench
        ENV["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.update(ENV)


# The scripted upstream: every seat waits SEAT_FIRST_S for its first token, then
# sends SEAT_CHUNKS chunks CHUNK_GAP_S apart; the judge answers after
# JUDGE_FIRST_S; the synthesizer streams SYNTH_CHUNKS chunks.
SEAT_CHUNKS, SYNTH_CHUNKS = 12, 12
SEAT_FIRST_S, CHUNK_GAP_S, JUDGE_FIRST_S = 0.3, 0.02, 0.1


def serve_upstreams(ports) -> None:
    """In its own process, so the upstream's threads do not compete with the
    measuring client for one interpreter lock. Puts (seat, judge, synthesizer)
    base URLs on `ports`."""
    from tests.scripted_server import STAMP, Reply, ScriptedServer

    stamped = "[" + STAMP.decode() + "]"
    seat = ScriptedServer()
    seat.default = Reply.stream(
        [stamped] * SEAT_CHUNKS, first_delay=SEAT_FIRST_S, delay=CHUNK_GAP_S, stamp=True
    )
    scores = [{"label": label, "score": 7, "reason": "ok"} for label in "ABCDE"]
    analysis = {
        "consensus": ["same"],
        "contradictions": [],
        "unique_insights": [],
        "blind_spots": [],
        "errors": [],
        "scores": scores,
    }
    judge = ScriptedServer()
    judge.default = Reply.stream([json.dumps(analysis)], first_delay=JUDGE_FIRST_S)
    synth = ScriptedServer()
    synth.default = Reply.stream([stamped] * SYNTH_CHUNKS, delay=CHUNK_GAP_S, stamp=True)
    for server in (seat, judge, synth):
        server.__enter__()
    ports.put((seat.base_url, judge.base_url, synth.base_url))
    while True:
        time.sleep(3600)


@dataclass
class Site:
    user: object
    panels: dict  # seats (3, 4, 5) -> Panel, each with a judge and a synthesizer
    seat_model: str  # the API's id of the seat model, answering alone


def setup_site(urls) -> Site:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from panels.models import CatalogModel, Panel, Provider, Seat

    def model(url, name):
        provider = Provider.objects.create(name=name, base_url=url)
        return CatalogModel.objects.create(
            provider=provider, model_id=name, display_name=name, input_price=1, output_price=2
        )

    seat, judge, synth = (
        model(u, n) for u, n in zip(urls, ("seat", "judge", "synth"), strict=True)
    )
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    panels = {}
    for n in (3, 4, 5):
        panel = Panel.objects.create(
            owner=user,
            slug=f"bench-{n}",
            name=f"{n} seats",
            judge=judge,
            synthesizer=synth,
            deadline_s=60,
        )
        for i in range(n):
            Seat.objects.create(panel=panel, position=i, model=seat)
        panels[n] = panel
    return Site(user=user, panels=panels, seat_model=seat.model_id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_stack(port: int, concurrency: int, workers: int = 1) -> dict[str, list]:
    """Daphne on `port` and `workers` Celery workers (threads pool), as the
    Procfile runs them. Returns {"worker": [...], "daphne": [...]}."""
    env = {**os.environ, **ENV, "PYTHONUNBUFFERED": "1"}
    log = open(DATA_DIR / "stack.log", "w")  # noqa: SIM115 - lives as long as the stack
    celery = [sys.executable, "-m", "celery", "-A", "fusionroom", "worker", "--pool", "threads"]
    quiet = ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    worker = [
        subprocess.Popen(
            [*celery, "--concurrency", str(concurrency), "-n", f"bench{i}@localhost", *quiet],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        for i in range(workers)
    ]
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    web = subprocess.Popen(
        [*daphne, "fusionroom.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    return {"worker": worker, "daphne": [web]}


async def wait_ready(port: int, workers: int = 1) -> None:
    import httpx

    from fusionroom.celery import app

    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/admin/login/")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("Daphne did not answer in 30 s; see " + str(DATA_DIR / "stack.log"))
    for _ in range(100):
        if len(await asyncio.to_thread(app.control.ping, timeout=0.5) or []) >= workers:
            return
    raise SystemExit("the worker did not start; see " + str(DATA_DIR / "stack.log"))


def stop(processes) -> None:
    """Terminate, then kill what did not end in 10 s: nothing is left behind."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tree(pid: int) -> list[int]:
    """The process and its descendants alive now (Linux)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in task.read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its descendants, living or
    reaped (Linux): the whole cost of whatever serves one path."""
    total = 0.0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if member == pid:
                raise  # the process measured is gone: its numbers would be wrong
            continue  # a child that ended between the listing and the read
        # utime, stime, cutime, cstime (fields 14-17 of proc(5)); cutime and cstime
        # count children that already ended.
        total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB."""
    total = 0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


class PeakMemory:
    """Samples the processes' resident memory every 100 ms while it is open."""

    def __init__(self, processes):
        self.pids = [p.pid for p in processes]
        self.peak = 0.0

    async def __aenter__(self):
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self):
        while True:
            self.peak = max(self.peak, sum(rss_mb(pid) for pid in self.pids))
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc):
        self._task.cancel()
        self.peak = max(self.peak, sum(rss_mb(pid) for pid in self.pids))


def pct(values, p) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def machine() -> str:
    """The date, cores, CPU model, Python and load: what a reader needs to compare runs."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # Other work on the machine slows every path alike, but a reader should know.
    load = os.getloadavg()[0]
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({model}), "
        f"Python {platform.python_version()}, {platform.machine()}, load average "
        f"{load:.1f} at the start"
    )


def write_section(name: str, body: str, doc: Path | None = None) -> None:
    """Replace the part of docs/PERFORMANCE.md that the benchmark `name` owns
    (between its two markers), leaving every other part, including hand-written
    ones, as it is. A part not there yet is added at the end."""
    doc = doc or DOC
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    part = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + part + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + part + "\n"
    doc.write_text(text)
    print(f"wrote {doc} ({name})")


class Stack:
    """The whole setup for one benchmark, started on entry and stopped on exit:
    the scripted upstream (its own process), the site's rows, Daphne on a free
    port and the Celery workers. `measured(coroutine)` runs a batch and adds
    the CPU time and peak memory the workers and Daphne spent on it."""

    def __init__(self, concurrency: int, workers: int = 1):
        self.concurrency, self.workers = concurrency, workers
        self.port = free_port()

    def __enter__(self) -> "Stack":
        import multiprocessing

        import redis

        redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
        ports: multiprocessing.Queue = multiprocessing.Queue()
        self.upstream = multiprocessing.Process(target=serve_upstreams, args=(ports,), daemon=True)
        self.upstream.start()
        self.processes: dict[str, list] = {}
        try:
            self.urls = ports.get(timeout=30)
            self.site = setup_site(self.urls)
            from django.test import Client

            client = Client()
            client.force_login(self.site.user)
            self.cookie = client.cookies["sessionid"].value
            self.processes = start_stack(self.port, self.concurrency, self.workers)
            asyncio.run(wait_ready(self.port, self.workers))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop([p for group in self.processes.values() for p in group])
        self.upstream.terminate()
        self.upstream.join(10)
        if not exc or exc[0] is None:  # after a failure its logs say what happened
            shutil.rmtree(DATA_DIR, ignore_errors=True)

    def measured(self, batch) -> dict:
        async def run():
            memory = {role: PeakMemory(group) for role, group in self.processes.items()}
            for sampler in memory.values():
                await sampler.__aenter__()
            try:
                result = await batch
            finally:
                for sampler in memory.values():
                    await sampler.__aexit__()
            result["memory"] = {role: sampler.peak for role, sampler in memory.items()}
            return result

        before = self.cpu()
        result = asyncio.run(run())
        after = self.cpu()
        result["cpu"] = {role: after[role] - before[role] for role in after}
        return result

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each role's processes."""
        return {
            role: sum(cpu_seconds(p.pid) for p in group) for role, group in self.processes.items()
        }

"""How much time does Fusion Room add on top of the models themselves?

    python benchmarks/overhead.py            # 1, 20 and 100 concurrent runs
    python benchmarks/overhead.py --levels 1,20

Against a scripted upstream with fixed latencies, it starts the real parts (Daphne,
a Celery worker with the threads pool, Redis), opens one websocket per run as a
browser would, fires N runs of 3-5 seats at once, and measures:

- overhead: a run's wall time in the worker minus its critical path (slowest kept
  seat + judge + synthesis, as each call measured itself);
- relay delay: from the upstream writing a chunk to the browser's websocket
  receiving it (chunks carry their send time; one clock, one machine);
- integrity: every answer's deltas, joined in order, equal its saved text.

Writes docs/PERFORMANCE.md. Needs Redis (uses database 14).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(tempfile.mkdtemp(prefix="fusionroom-bench-"))
ENV = {
    "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
    "DEBUG": "false",
    "SECRET_KEY": "benchmark-secret-key-benchmark-secret-key-0123456789",
    "FUSIONROOM_DATA_DIR": str(DATA_DIR),
    "REDIS_URL": "redis://127.0.0.1:6379/14",
    "LOCAL_MODELS_ENABLED": "false",
    "CALL_MAX_RETRIES": "0",
    "LOG_LEVEL": "WARNING",
    "CONCURRENT_RUNS": "1000",
    "RUNS_PER_MINUTE": "100000",
}
if os.environ.get("BENCH_DATABASE_URL"):  # e.g. postgres://postgres@127.0.0.1:5432/bench
    ENV["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
else:
    os.environ.pop("DATABASE_URL", None)
os.environ.update(ENV)

SEAT_CHUNKS, SYNTH_CHUNKS = 12, 12
SEAT_FIRST_S, CHUNK_GAP_S, JUDGE_FIRST_S = 0.3, 0.02, 0.1
TARGETS = {"overhead_p50": 20, "overhead_p99": 60, "relay_p99": 60}
_STAMPED = re.compile(r"\[(\d+\.\d+)\]")


def serve_upstreams(ports) -> None:
    """In its own process, so the upstream's threads do not compete with the
    measuring client for one interpreter lock."""
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


def setup_site(urls):
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
    return user, panels


def start_stack(port: int, concurrency: int):
    env = {**os.environ, **ENV, "PYTHONUNBUFFERED": "1"}
    log = open(DATA_DIR / "stack.log", "w")  # noqa: SIM115 - lives as long as the stack
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fusionroom",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "-n",
            "bench@localhost",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "fusionroom.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    return [worker, web]


async def wait_ready(port: int) -> None:
    import httpx

    from fusionroom.celery import app

    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/admin/login/")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    for _ in range(100):
        if await asyncio.to_thread(app.control.ping, timeout=0.5):
            return
    raise SystemExit("the worker did not start; see " + str(DATA_DIR / "stack.log"))


async def follow(port: int, cookie: str, room_id: int, run_id: int, frames: list, ready):
    import websockets

    url = f"ws://127.0.0.1:{port}/ws/conversations/{room_id}/"
    headers = {"Cookie": f"sessionid={cookie}"}
    async with websockets.connect(
        url, origin=f"http://127.0.0.1:{port}", additional_headers=headers, max_size=None
    ) as ws:
        await ws.recv()  # the snapshot
        ready.set()
        async for raw in ws:
            frames.append((time.monotonic(), json.loads(raw)))
            if frames[-1][1]["type"] == "run.done" and frames[-1][1].get("run") == run_id:
                return


async def one_level(n: int, port: int, user, panels, cookie: str) -> dict:
    from asgiref.sync import sync_to_async

    from chat.engine.runs import create_run
    from chat.models import Conversation
    from chat.tasks import execute_run

    @sync_to_async
    def make_runs():
        made = []
        for i in range(n):
            room = Conversation.objects.create(owner=user, panel=panels[3 + i % 3])
            made.append((room.pk, create_run(room, f"Question {i}?").run.pk))
        return made

    runs = await make_runs()
    frames = {run_id: [] for _, run_id in runs}
    readies = [asyncio.Event() for _ in runs]
    followers = [
        asyncio.create_task(follow(port, cookie, room, run_id, frames[run_id], ready))
        for (room, run_id), ready in zip(runs, readies, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    enqueued = time.monotonic()
    sent_at: dict[int, float] = {}

    def send(run_id: int) -> None:
        sent_at[run_id] = time.time()
        execute_run.delay(run_id)

    await asyncio.gather(*(asyncio.to_thread(send, run_id) for _, run_id in runs))
    await asyncio.wait_for(asyncio.gather(*followers), timeout=300)
    wall = time.monotonic() - enqueued
    return await sync_to_async(measure)(runs, frames, wall, sent_at)


def measure(runs, frames, wall, sent_at: dict[int, float]) -> dict:
    from chat.models import Answer, Run

    overheads, relays, broken, queue_waits = [], [], 0, []
    for _, run_id in runs:
        run = Run.objects.get(pk=run_id)
        answers = list(run.answers.all())
        kept = [a.latency_ms for a in answers if a.role == "seat" and a.status == "done"]
        others = sum(a.latency_ms or 0 for a in answers if a.role != "seat")
        overheads.append(run.stage_ms["total"] - (max(kept) + others))
        if os.environ.get("BENCH_DEBUG"):
            judge = sum(a.latency_ms or 0 for a in answers if a.role == "judge")
            synth = sum(a.latency_ms or 0 for a in answers if a.role == "synthesizer")
            st = run.stage_ms
            print(
                "panel+",
                st["panel"] - max(kept),
                "judge+",
                st["judging"] - judge,
                "synth+",
                st["synthesizing"] - synth,
                "rest",
                st["total"] - st["panel"] - st["judging"] - st["synthesizing"],
            )
        # From the task's sending, not the run's creation: the runs are created
        # before their browsers connect, which is the benchmark's time, not the queue's.
        queue_waits.append((run.started_at.timestamp() - sent_at[run_id]) * 1000)
        for answer in answers:
            if answer.role == Answer.Role.JUDGE:
                continue
            deltas = [
                (t, f)
                for t, f in frames[run_id]
                if f["type"] == "answer.delta" and f["answer"] == answer.pk
            ]
            seqs = [f["seq"] for _, f in deltas]
            text = "".join(f["text"] for _, f in deltas)
            if seqs != list(range(1, len(seqs) + 1)) or text != answer.text:
                broken += 1
            for received, frame in deltas:
                relays += [(received - float(ts)) * 1000 for ts in _STAMPED.findall(frame["text"])]
    return {
        "overheads": overheads,
        "relays": relays,
        "broken": broken,
        "wall": wall,
        "queue": queue_waits,
        "runs": len(runs),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(results: dict[int, dict]) -> str:
    head = (
        "| concurrent runs | overhead p50 / p95 / p99 (ms) | relay p50 / p95 / p99 (ms) "
        "| queue wait p50 (ms) | wall (s) | answers with lost, doubled or reordered text |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for n, r in results.items():
        o, rl = r["overheads"], r["relays"]
        lines.append(
            f"| {n} | {pct(o, 50):.0f} / {pct(o, 95):.0f} / {pct(o, 99):.0f} "
            f"| {pct(rl, 50):.0f} / {pct(rl, 95):.0f} / {pct(rl, 99):.0f} "
            f"| {statistics.median(r['queue']):.0f} | {r['wall']:.1f} "
            f"| {r['cpu'][0] * 1000 / r['runs']:.0f} / {r['cpu'][1] * 1000 / r['runs']:.0f} "
            f"| {r['broken']} |"
        )
    return "\n".join(lines)


def verdict(results: dict[int, dict]) -> list[str]:
    lines = []
    r = results.get(20)
    if r:
        checks = [
            ("overhead p50 at 20 runs", pct(r["overheads"], 50), TARGETS["overhead_p50"]),
            ("overhead p99 at 20 runs", pct(r["overheads"], 99), TARGETS["overhead_p99"]),
            ("relay p99 at 20 runs", pct(r["relays"], 99), TARGETS["relay_p99"]),
        ]
        for name, value, target in checks:
            mark = "met" if value <= target else "MISSED"
            lines.append(f"- {name}: {value:.0f} ms (target ≤ {target} ms): **{mark}**")
    broken = sum(r["broken"] for r in results.values())
    lines.append(f"- text integrity: {broken or 'no'} answers with lost, doubled or reordered text")
    return lines


def write_doc(results, seconds: float) -> None:
    doc = ROOT / "docs" / "PERFORMANCE.md"
    body = f"""# Performance

Written by `python benchmarks/overhead.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
({os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}); the
benchmark took {seconds:.0f} s.

What it measures (see the script's docstring): real Daphne, a real Celery worker
(threads pool) and Redis; a scripted upstream where every seat waits
{SEAT_FIRST_S * 1000:.0f} ms for its first token and then sends {SEAT_CHUNKS} chunks
{CHUNK_GAP_S * 1000:.0f} ms apart, the judge answers after {JUDGE_FIRST_S * 1000:.0f} ms,
the synthesizer streams {SYNTH_CHUNKS} chunks; runs of 3, 4 and 5 seats; one browser
websocket per run.

- **overhead**: a run's wall time in the worker minus its critical path (slowest
  kept seat + judge + synthesis, each as its own call measured it): what the
  pipeline adds (database writes, stage changes, scheduling).
- **relay**: from the upstream writing a chunk to the browser's websocket receiving
  it. It includes the deliberate coalescing of deltas (up to 50 ms).
- **queue wait**: from the run's task being sent to a worker starting it.

{report(results)}

Against the targets:

{chr(10).join(verdict(results))}
"""
    doc.write_text(body)
    print(f"wrote {doc.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,20,100", help="concurrent runs, comma-separated")
    levels = [int(x) for x in parser.parse_args().levels.split(",")]
    started = time.monotonic()

    import redis

    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    ports = multiprocessing.Queue()
    upstream = multiprocessing.Process(target=serve_upstreams, args=(ports,), daemon=True)
    upstream.start()
    user, panels = setup_site(ports.get(timeout=30))
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    port = 18700 + os.getpid() % 200
    stack = start_stack(port, concurrency=max(levels) + 10)
    results = {}
    try:
        asyncio.run(wait_ready(port))
        for n in levels:
            before = [_cpu_seconds(p.pid) for p in stack]
            results[n] = asyncio.run(one_level(n, port, user, panels, cookie))
            results[n]["cpu"] = [
                _cpu_seconds(p.pid) - b for p, b in zip(stack, before, strict=True)
            ]
            print(report({n: results[n]}).splitlines()[-1], flush=True)
    finally:
        for process in stack:
            process.terminate()
        for process in stack:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        upstream.terminate()
    print(report(results))
    print("\n".join(verdict(results)))
    write_doc(results, time.monotonic() - started)


if __name__ == "__main__":
    main()

"""Fusion Room side by side with a peer gateway, LiteLLM's proxy, in one run.

    python benchmarks/peers.py                  # about a minute (plus LiteLLM's install once)
    python benchmarks/peers.py --concurrency 50 --rounds 1

One scripted upstream (OpenAI SSE: first chunk after 300 ms, then 12 chunks 20 ms
apart) is reached by the same batch of concurrent streamed requests along each path:

1. straight to the upstream (the floor);
2. through LiteLLM's proxy (`litellm --config <yaml> --num_workers 1`);
3. through Fusion Room's /v1 with a one-seat panel (one catalog model answering alone);
4. through Fusion Room's /v1 with a fusion panel: 3 seats + judge + synthesizer,
   5 upstream calls a request.

For every request: time to first token (the first content delta) and to the end of
the stream, and whether the text arrived whole. For each path: CPU time (user +
system, from /proc) of the processes serving it — LiteLLM's process tree; Daphne +
the Celery worker — over its batch, per request and per upstream call. Then the
relay delay of overhead.py (20 runs followed by browser websockets). It prints the
table and writes its part of docs/PERFORMANCE.md with each target met or missed.

LiteLLM is never a dependency of the project: on first use the benchmark makes its
own virtualenv (`BENCH_LITELLM_VENV`, default ~/.cache/fusionroom-bench/litellm-venv)
with `pip install 'litellm[proxy]==<LITELLM_VERSION>'` from PyPI, and reuses it
after. If it cannot be installed or started, the table says why and the other
paths are still measured. Redis: `BENCH_REDIS_URL` (default database 14, flushed);
everything it starts it stops (benchmarks/stack.py).

Long on purpose: one script starts both gateways, drives the same load through each and
prints one table; split, the halves would have to agree on every parameter.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import stack
from overhead import one_level
from stack import pct

# 1.110's `proxy` extra needs a `litellm-proxy` package that PyPI does not carry;
# 1.80.0 installs with Python 3.11 and serves `--config` as documented.
LITELLM_VERSION = "1.80.0"
LITELLM_VENV = Path(
    os.environ.get(
        "BENCH_LITELLM_VENV", Path.home() / ".cache" / "fusionroom-bench" / "litellm-venv"
    )
)
LITELLM_KEY = "sk-bench-peer"  # the proxy refuses to start without a master key
_STAMPED = re.compile(r"\[(\d+\.\d+)\]")


@dataclass
class Request:
    ttft_ms: float | None = None
    end_ms: float | None = None
    text: str = ""
    run_id: int | None = None  # Fusion Room's run, from the chunks' id
    critical_ms: float | None = None  # that run's critical path to its first synthesis token
    error: str = ""


@dataclass
class PathResult:
    name: str
    requests: list[Request] = field(default_factory=list)
    cpu_s: float | None = None  # of the processes serving this path, over its batch
    calls_per_request: int = 1
    unavailable: str = ""  # why the path could not be measured

    def ttfts(self) -> list[float]:
        return [r.ttft_ms for r in self.requests if r.ttft_ms is not None]

    def ends(self) -> list[float]:
        return [r.end_ms for r in self.requests if r.end_ms is not None]

    def whole(self) -> int:
        """Requests whose text carries every chunk the upstream sent, once, in order."""
        return sum(1 for r in self.requests if _whole(r.text))

    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_s is None or not self.requests:
            return None
        return self.cpu_s * 1000 / len(self.requests)


def _whole(text: str) -> bool:
    stamps = [float(s) for s in _STAMPED.findall(text)]
    return len(stamps) == stack.SEAT_CHUNKS and stamps == sorted(stamps)


async def stream_one(client: httpx.AsyncClient, url: str, body: dict, headers: dict) -> Request:
    """One streamed chat completion, timed from sending the request."""
    request = Request()
    started = time.monotonic()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                request.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return request
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:
                    request.error = str(chunk["error"])[:200]
                if request.run_id is None and str(chunk.get("id", "")).startswith(
                    "chatcmpl-fusion-"
                ):
                    request.run_id = int(chunk["id"].rsplit("-", 1)[1])
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if request.ttft_ms is None:
                            request.ttft_ms = (time.monotonic() - started) * 1000
                        request.text += content
        request.end_ms = (time.monotonic() - started) * 1000
    except httpx.HTTPError as failure:
        request.error = f"{type(failure).__name__}: {failure}"
    return request


async def batch(url: str, model: str, n: int, headers: dict | None = None) -> list[Request]:
    """n streamed requests at once."""
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "How long is a piece of string?"}],
    }
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(stream_one(client, url, body, headers or {}) for _ in range(n))
        )


# --- LiteLLM's proxy, in its own virtualenv -------------------------------------------


class PeerUnavailable(Exception):
    """LiteLLM could not be installed or started here; the message says why."""


def litellm_binary() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(LITELLM_VENV)],
        [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PeerUnavailable(f"`{' '.join(step)}` failed: {' / '.join(tail)}")
    return binary


class LiteLLM:
    """The proxy on a free port, routing the model `seat` to the scripted upstream."""

    def __init__(self, upstream: str):
        self.upstream, self.port = upstream.rstrip("/"), stack.free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LiteLLM":
        binary = litellm_binary()
        api_base = self.upstream if self.upstream.endswith("/v1") else self.upstream + "/v1"
        config = stack.DATA_DIR / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: seat\n"
            "    litellm_params:\n"
            "      model: openai/seat\n"
            f"      api_base: {api_base}\n"
            "      api_key: x\n"
        )
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": LITELLM_KEY,
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
            "LITELLM_LOG": "ERROR",
        }
        self.log = stack.DATA_DIR / "litellm.log"
        command = [str(binary), "--config", str(config), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--num_workers", "1"]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        try:
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log.read_text().strip().splitlines()[-3:]
                raise PeerUnavailable(f"litellm exited at start: {' / '.join(tail)}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise PeerUnavailable(f"litellm did not answer in 90 s; see {self.log}")

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return stack.cpu_seconds(self.process.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        family = stack._tree(self.process.pid)  # its workers too, should it fork any
        stack.stop([self.process])
        for pid in family[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


# --- Fusion Room's side ---------------------------------------------------------------


def api_key(site: stack.Site) -> str:
    from chat.api.keys import create_key

    return create_key(site.user, "peer benchmark")[1]


def record_critical_paths(requests: list[Request]) -> None:
    """Each fusion run's critical path to its first synthesis token, from its
    recorded calls: slowest kept seat + judge + the synthesizer's first token."""
    from chat.models import Answer, Run

    for request in requests:
        if request.run_id is None:
            continue
        answers = list(Run.objects.get(pk=request.run_id).answers.all())
        kept = [
            a.latency_ms or 0 for a in answers if a.role == Answer.Role.SEAT and a.status == "done"
        ]
        judge = sum(a.latency_ms or 0 for a in answers if a.role == Answer.Role.JUDGE)
        first = [a.first_token_ms or 0 for a in answers if a.role == Answer.Role.SYNTHESIZER]
        if kept and first:
            request.critical_ms = max(kept) + judge + first[0]


# --- Report ---------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def table(paths: list[PathResult], floor: float) -> str:
    head = [
        "path",
        "TTFT p50 / p95 (ms)",
        "added TTFT p50 (ms)",
        "end p50 / p95 (ms)",
        "CPU per request (ms)",
        "upstream calls per request",
        "CPU per upstream call (ms)",
        "text whole",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        if path.unavailable:
            cells = [path.name, f"not measured: {path.unavailable}"] + [""] * (len(head) - 2)
        else:
            t, e, cpu = path.ttfts(), path.ends(), path.cpu_ms_per_request()
            per_call = None if cpu is None else cpu / path.calls_per_request
            cells = [
                path.name,
                f"{_ms(pct(t, 50))} / {_ms(pct(t, 95))}",
                "—" if path.name.startswith("straight") else f"+{pct(t, 50) - floor:.0f}",
                f"{_ms(pct(e, 50))} / {_ms(pct(e, 95))}",
                _ms(cpu),
                str(path.calls_per_request),
                _ms(per_call),
                f"{path.whole()} / {len(path.requests)}",
            ]
        assert len(cells) == len(head), "a row has as many cells as the header"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(paths: dict[str, PathResult], relays: list[float], flush_s: float) -> list[str]:
    floor = pct(paths["direct"].ttfts(), 50)
    solo, fusion, peer = paths["solo"], paths["fusion"], paths["litellm"]
    lines = []

    def mark(name: str, value: float, limit: float, unit: str = "ms", how: str = "") -> None:
        verdict = "met" if value <= limit else "MISSED"
        lines.append(
            f"- {name}: {value:.0f} {unit} (target ≤ {limit:.0f} {unit}){how}: **{verdict}**"
        )

    if peer.unavailable:
        lines.append(f"- the targets against LiteLLM: not measured ({peer.unavailable})")
    else:
        mark(
            "added TTFT of a one-seat panel ≤ LiteLLM's added TTFT (p50)",
            pct(solo.ttfts(), 50) - floor,
            pct(peer.ttfts(), 50) - floor,
        )
        litellm_cpu = peer.cpu_ms_per_request() or 0
        for path in (solo, fusion):
            cpu = (path.cpu_ms_per_request() or 0) / path.calls_per_request
            mark(
                f"CPU per upstream call relayed ({path.name}) ≤ LiteLLM's per request",
                cpu,
                litellm_cpu,
                how=f" (LiteLLM: {litellm_cpu:.0f} ms)",
            )
    timed = [r for r in fusion.requests if r.ttft_ms is not None and r.critical_ms is not None]
    gaps = [r.ttft_ms - r.critical_ms for r in timed]  # type: ignore[operator]
    if gaps:
        mark(
            "a fusion run's first synthesis token ≤ its critical path + 150 ms (p50 of the gap)",
            statistics.median(gaps),
            150,
            how=f" (critical path p50 {statistics.median(r.critical_ms for r in timed):.0f} ms)",
        )
    mark(
        "relay delay p99 at 20 runs ≤ 2 × the coalescing interval",
        pct(relays, 99),
        2 * flush_s * 1000,
    )
    broken = sum(len(p.requests) - p.whole() for p in paths.values() if not p.unavailable)
    lines.append(
        f"- text whole on every path: {'yes' if not broken else f'**no: {broken} broken**'}"
    )
    return lines


def write_doc(paths, relay_level: dict, flush_s: float, options, seconds: float) -> None:
    floor = pct(paths["direct"].ttfts(), 50)
    relays = relay_level["relays"]
    body = f"""## Side by side with a peer: `python benchmarks/peers.py`

Run on {stack.machine()}, in {seconds:.0f} s. One scripted upstream (OpenAI SSE:
first chunk after {stack.SEAT_FIRST_S * 1000:.0f} ms, then {stack.SEAT_CHUNKS} chunks
{stack.CHUNK_GAP_S * 1000:.0f} ms apart; the fusion panel's judge answers after
{stack.JUDGE_FIRST_S * 1000:.0f} ms and its synthesizer streams {stack.SYNTH_CHUNKS} chunks),
{options.concurrency} concurrent streamed requests per path, {options.rounds} rounds (the paths
taken in turn within each round), after one warm-up request per path. LiteLLM
{LITELLM_VERSION} runs its proxy (`litellm --config`, 1 worker) from its own
virtualenv (`{LITELLM_VENV}`, made by the benchmark on first use): it is never a
dependency of the project. Fusion Room runs as the Procfile does: one Daphne, one
Celery worker (threads pool); a one-model request runs in Daphne itself, with no
queue hop (`ONE_SEAT_RUNS_IN_WEB`), a panel's in the worker.

- **TTFT**: from sending the request to the first content delta; **added**: over
  the straight path's p50. **end**: to the end of the stream.
- **CPU**: user + system time of the processes serving the path (LiteLLM's process
  tree; Daphne + the worker) over its batches, divided by their requests; for the
  fusion panel also by its 5 upstream calls. The upstream and the measuring client
  are not counted in any path.
- **text whole**: every chunk the upstream sent arrived, once, in order.

{table(list(paths.values()), floor)}

Relay delay (overhead.py's measurement: 20 fusion runs of 3 seats, each followed by a
browser websocket; from the upstream writing a chunk to the websocket receiving it):
p50 {pct(relays, 50):.0f} ms, p95 {pct(relays, 95):.0f} ms, p99 {pct(relays, 99):.0f} ms;
the coalescing interval is {flush_s * 1000:.0f} ms; {relay_level["broken"]} answers
with lost, doubled or reordered text.

Against the targets (20 concurrent, this machine, this run):

{chr(10).join(targets(paths, relays, flush_s))}
"""
    stack.write_section("peers", body)


def main() -> None:
    stack.configure()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=20, help="requests at once per path")
    parser.add_argument(
        "--rounds", type=int, default=3, help="batches per path, taken in turn across paths"
    )
    options = parser.parse_args()
    n = options.concurrency
    started = time.monotonic()
    paths = {
        "direct": PathResult("straight to the upstream"),
        "litellm": PathResult("LiteLLM proxy"),
        "solo": PathResult("Fusion Room /v1, one-seat panel"),
        "fusion": PathResult("Fusion Room /v1, 3 seats + judge + synthesizer", calls_per_request=5),
    }
    with stack.Stack(concurrency=2 * n + 10) as running, contextlib.ExitStack() as peers:
        from chat.engine.answer import FLUSH_INTERVAL_S

        seat_url = running.urls[0]
        v1 = f"http://127.0.0.1:{running.port}/v1/chat/completions"
        key = {"Authorization": f"Bearer {api_key(running.site)}"}
        # path -> (url, model, headers, CPU seconds so far of the processes serving it)
        routes: dict[str, tuple] = {
            "direct": (f"{seat_url}/chat/completions", "seat", {}, None),
            "solo": (v1, running.site.seat_model, key, lambda: sum(running.cpu().values())),
            "fusion": (v1, "fusion/bench-3", key, lambda: sum(running.cpu().values())),
        }
        try:
            peer = peers.enter_context(LiteLLM(seat_url))
            litellm_key = {"Authorization": f"Bearer {LITELLM_KEY}"}
            route = (f"{peer.url}/v1/chat/completions", "seat", litellm_key, peer.cpu_seconds)
            routes = {"direct": routes["direct"], "litellm": route, **routes}
        except PeerUnavailable as why:
            paths["litellm"].unavailable = str(why)
            print(f"LiteLLM not measured: {why}", flush=True)
        for url, model, headers, _ in routes.values():
            asyncio.run(batch(url, model, 1, headers))  # first-use imports and connections
        # Paths in turn within each round, so that other work on the machine weighs
        # on all of them alike.
        for _ in range(options.rounds):
            for name, (url, model, headers, cpu) in routes.items():
                before = cpu() if cpu else None
                paths[name].requests += asyncio.run(batch(url, model, n, headers))
                if cpu:
                    paths[name].cpu_s = (paths[name].cpu_s or 0) + cpu() - before
        record_critical_paths(paths["fusion"].requests)
        relay_level = running.measured(
            one_level(20, running.port, running.site, running.cookie, seats=(3,))
        )
    for path in paths.values():
        errors = [r.error for r in path.requests if r.error]
        if errors:
            print(f"{path.name}: {len(errors)} failed, e.g. {errors[0]}", flush=True)
    floor = pct(paths["direct"].ttfts(), 50)
    print(table(list(paths.values()), floor))
    print("\n".join(targets(paths, relay_level["relays"], FLUSH_INTERVAL_S)))
    write_doc(paths, relay_level, FLUSH_INTERVAL_S, options, time.monotonic() - started)


if __name__ == "__main__":
    main()

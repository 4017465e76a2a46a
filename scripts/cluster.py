#!/usr/bin/env python3
"""The production topology on one machine, as hosts (root, Linux network namespaces):

    sudo .venv/bin/python scripts/cluster.py                          # 20 fusion runs
    sudo .venv/bin/python scripts/cluster.py --runs 200               # docs/PERFORMANCE.md's load
    sudo .venv/bin/python scripts/cluster.py --runs 200 --kill-worker-at 0.5
    sudo .venv/bin/python scripts/cluster.py clean                    # after a SIGKILLed run

Each host is a network namespace with its own address on a bridge (10.x.y.0/24) and
its own host name (a UTS namespace, so each worker is `worker@<host>` as on real
machines), running the commands of Procfile.production with deploy/env.example's
environment:

    proxy      .2    nginx, deploy/nginx.conf as written (its upstream lists the web hosts)
    web-1/2    .11/.12  Daphne (`web-private`)
    worker-1/2 .21/.22  Celery, threads pool (`worker`), and beat (`beat`): one sends,
                        the other stands by (fusionroom/beat.py)
    data       .5    its own PostgreSQL cluster (initdb in a temporary folder) and its
                     own redis-server, bound to the bridge address
    upstream   .7    a scripted OpenAI-compatible server (tests/scripted_server.py)

It runs N concurrent fusion runs (3 seats, a judge, a synthesizer) through nginx and
/v1/chat/completions with an API key, and prints: wall time, overhead p50/p99 (a run's
time in the worker less its critical path, as benchmarks/overhead.py measures it), CPU
per run of each host, the database connections each host held at most, the runs that
failed (in words) or were left stuck, and answers whose saved text differs from what
their conversation's stream had carried. `--kill-worker-at 0.5` SIGKILLs every
process of worker-1 once half the load's model calls have ended.

Everything it started is stopped on every way out (an exception, Ctrl+C, SIGTERM):
processes, namespaces, the bridge and the temporary folder. tests/test_cluster.py
builds its fault tests from the `Cluster` class here.

Long on purpose: the hosts, their processes, the load, the kill and the cleanup are
one experiment whose cleanup must see everything it started; one file keeps it whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "frc"  # every namespace and link this script makes starts with it (`clean`)
WEB_PORT = 8000
UPSTREAM_PORT = 8000
PASSWORD = "cluster-password-9"
PANEL_SLUG = "cluster"
ACTIVE = ("queued", "routing", "panel", "judging", "synthesizing")
# host name -> last byte of its address
HOSTS = {
    "proxy": 2,
    "data": 5,
    "upstream": 7,
    "web-1": 11,
    "web-2": 12,
    "worker-1": 21,
    "worker-2": 22,
}
WEB_HOSTS = ("web-1", "web-2")
WORKER_HOSTS = ("worker-1", "worker-2")


def postgres_bin() -> Path | None:
    """The PostgreSQL server's binaries (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def unavailable() -> str | None:
    """Why a cluster cannot start here, in words; None when it can."""
    if sys.platform != "linux":
        return "the cluster needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the cluster needs root (ip netns, a bridge, PostgreSQL run as `postgres`)"
    missing = [
        tool
        for tool in ("ip", "unshare", "setpriv", "redis-server", "envsubst", "openssl")
        if not shutil.which(tool)
    ]
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        missing.append("nginx")
    if postgres_bin() is None:
        missing.append("PostgreSQL's server (initdb)")
    if missing:
        return f"missing here: {', '.join(missing)}"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run PostgreSQL as (it refuses root)"
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def site_conf(text: str, variables: dict[str, str]) -> str:
    """deploy/nginx.conf's text with its FR_* variables filled in, as the guide's envsubst does."""
    return subprocess.run(
        ["envsubst", " ".join(f"${name}" for name in variables)],
        input=text,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def nginx_main(folder: Path, site: Path) -> Path:
    """The smallest main configuration around the site file (Debian's sets the same),
    with its pid, logs and temporary files in `folder`."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # root's folders are 0700
    temp = "".join(
        f"    {kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx-main.conf"
    main.write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/nginx-error.log info;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n    include /etc/nginx/mime.types;\n"
        f"    access_log {folder}/nginx-access.log;\n{temp}    include {site};\n}}\n"
    )
    return main


def procfile_line(process: str) -> str:
    for line in (ROOT / "Procfile.production").read_text().splitlines():
        if line.startswith(f"{process}:"):
            return line.partition(":")[2].strip()
    raise SystemExit(f"Procfile.production has no {process!r} line")


def guide_env() -> dict[str, str]:
    """deploy/env.example's variables, with real secrets in place of the placeholders."""
    from cryptography.fernet import Fernet

    env = {}
    for line in (ROOT / "deploy/env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    return env


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route here overlaps."""
    routes = []
    for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        with contextlib.suppress(ValueError):
            first = line.split()[0]
            if first not in ("default", "broadcast", "local", "unreachable"):
                routes.append(ipaddress.ip_network(first, strict=False))
            elif first in ("broadcast", "local"):
                routes.append(ipaddress.ip_network(line.split()[1], strict=False))
    for _ in range(200):
        candidate = ipaddress.ip_network(
            f"10.{200 + secrets.randbelow(8)}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(route) for route in routes):
            return candidate
    raise RuntimeError("no free 10.200.0.0/13 subnet for the cluster's bridge")


# --- the scripted upstream host ------------------------------------------------------


@dataclass
class Script:
    """What the upstream host answers, by the model a request names: each seat waits
    `seat_first` s, then streams `seat_chunks` words `gap` s apart; the judge answers
    a fixed analysis; the synthesizer streams `synth_chunks` words; `story` (one
    model answering alone, for the browser) streams `story_chunks` words."""

    seat_chunks: int = 12
    seat_first: float = 0.3
    synth_chunks: int = 12
    gap: float = 0.02
    story_chunks: int = 300
    story_gap: float = 0.05

    # Words joined without spaces at either end: a saved answer is stripped.
    def seat_words(self) -> list[str]:
        return [f"{' ' if n else ''}s{n}" for n in range(self.seat_chunks)]

    def synth_words(self) -> list[str]:
        return [f"{' ' if n else ''}f{n}" for n in range(self.synth_chunks)]

    def seat_text(self) -> str:
        return "".join(self.seat_words())

    def synth_text(self) -> str:
        return "".join(self.synth_words())

    def story_words(self) -> list[str]:
        return [f"w{n} " for n in range(self.story_chunks)]

    def argv(self) -> list[str]:
        return [f"--{name.replace('_', '-')}={value}" for name, value in vars(self).items()]


def serve_upstream(address: str, port: int, script: Script) -> None:
    from tests.scripted_server import Reply, ScriptedServer

    scores = [{"label": label, "score": 7, "reason": "ok"} for label in "ABCDE"]
    analysis = {
        "consensus": ["same"],
        "contradictions": [],
        "unique_insights": [],
        "blind_spots": [],
        "errors": [],
        "scores": scores,
    }
    words, synth = script.seat_words(), script.synth_words()

    def respond(body: dict) -> Reply:
        model = body.get("model")
        if model == "seat":
            return Reply.stream(words, first_delay=script.seat_first, delay=script.gap)
        if model == "judge":
            return Reply.stream([json.dumps(analysis)], first_delay=0.1)
        if model == "synth":
            return Reply.stream(synth, delay=script.gap)
        if model == "story":
            return Reply.stream(script.story_words(), delay=script.story_gap)
        return Reply.json(404, {"error": {"message": f"no model {model!r} here"}})

    server = ScriptedServer(host=address, port=port)
    server.respond = respond
    server.default = Reply.json(200, {"object": "list", "data": []})
    with server:
        print(f"scripted upstream on {server.base_url}", flush=True)
        while True:  # until the cluster stops it (SIGTERM) or kills its host
            time.sleep(3600)


# --- the site's rows, made on a web host as an operator would --------------------------


def setup_site(upstream_url: str) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from chat.api.keys import create_key
    from chat.models import Conversation
    from panels.models import CatalogModel, Panel, Provider, Seat

    user = get_user_model().objects.create_user("cluster", password=PASSWORD)
    provider = Provider.objects.create(name="Upstream", base_url=upstream_url)
    models = {
        name: CatalogModel.objects.create(
            provider=provider,
            model_id=name,
            display_name=name.title(),
            context_length=8192,
            input_price=1,
            output_price=2,
        )
        for name in ("seat", "judge", "synth", "story")
    }
    panel = Panel.objects.create(
        owner=user,
        slug=PANEL_SLUG,
        name="Cluster",
        judge=models["judge"],
        synthesizer=models["synth"],
        deadline_s=600,
    )
    for position in range(3):
        Seat.objects.create(panel=panel, position=position, model=models["seat"])
    story = Conversation.objects.create(owner=user, model=models["story"])
    return {
        "api_key": create_key(user, "cluster load")[1],
        "model": f"fusion/{PANEL_SLUG}",
        "username": user.username,
        "password": PASSWORD,
        "story_path": story.get_absolute_url(),
        "story_conversation": story.pk,
    }


# --- hosts and their processes ----------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path


@dataclass
class Host:
    name: str
    address: str
    netns: str
    data_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    def pids(self) -> list[int]:
        """Every process in this host's network namespace now (`ip netns pids`)."""
        result = sh("ip", "netns", "pids", self.netns, check=False)
        return [int(pid) for pid in result.stdout.split()]


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: its own and its reaped children's.
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """The topology, started on entry and stopped on exit, whatever happened."""

    def __init__(
        self,
        *,
        script: Script | None = None,
        heartbeat_ttl_s: int = 30,
        beat_lease_s: int = 30,
        # Beat on both worker hosts: one sends (the lease), the other takes over when
        # its host dies, so the sweeper outlives a killed worker host.
        beat_hosts: tuple[str, ...] = WORKER_HOSTS,
        worker_concurrency: int = 200,
        pool_size: int | None = None,
        log_level: str = "INFO",
        logs_to: Path | None = None,
        quiet: bool = False,
    ):
        reason = unavailable()
        if reason:
            raise RuntimeError(f"cannot start the cluster: {reason}")
        self.script = script or Script()
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.beat_lease_s = beat_lease_s
        self.beat_hosts = beat_hosts
        self.worker_concurrency = worker_concurrency
        self.pool_size = pool_size
        self.log_level = log_level
        self.logs_to = logs_to
        self.quiet = quiet
        self.tag = PREFIX + secrets.token_hex(2)
        self.bridge = f"{self.tag}br"
        self.hosts: dict[str, Host] = {}
        self.site: dict = {}
        self.env: dict[str, str] = {}
        self._torn_down = False
        self._made_bridge = False

    # The orchestrator reaches every host over the bridge from its own address (.1).
    @property
    def url(self) -> str:
        return f"https://{self.hosts['proxy'].address}"

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[cluster {self.tag}] {text}", flush=True)

    # -- starting

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def start(self) -> None:
        started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.workdir.chmod(0o755)  # PostgreSQL runs as `postgres` inside it
        (self.workdir / "logs").mkdir()
        self.subnet = free_subnet()
        self.gateway = str(self.subnet[1])
        self._network()
        data = self.hosts["data"].address
        self.env = {
            **guide_env(),
            "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ALLOWED_HOSTS": self.hosts["proxy"].address,
            "CSRF_TRUSTED_ORIGINS": self.url,
            "TRUSTED_PROXIES": self.hosts["proxy"].address,
            "DATABASE_URL": f"postgres://fusionroom@{data}:5432/fusionroom",
            "REDIS_URL": f"redis://{data}:6379/0",
            "LOCAL_MODELS_ENABLED": "false",
            "WORKER_CONCURRENCY": str(self.worker_concurrency),
            "LOG_LEVEL": self.log_level,
            "RUN_HEARTBEAT_TTL_S": str(self.heartbeat_ttl_s),
            "BEAT_LEASE_TTL_S": str(self.beat_lease_s),
            "CALL_MAX_RETRIES": "0",
            # The load measures the pipeline, not the per-user limits.
            "RUNS_PER_MINUTE": "1000000",
            "CONCURRENT_RUNS": "1000000",
            "API_RATE_LIMIT_PER_MINUTE": "1000000",
            "RUN_BUDGET_USD": "1000000",
            "DAILY_BUDGET_USD": "1000000",
            "MONTHLY_BUDGET_USD": "1000000",
        }
        if self.pool_size:
            self.env["DATABASE_POOL_SIZE"] = str(self.pool_size)
        self.start_postgres(first=True)
        self.start_redis()
        self.start_upstream()
        self.say("migrating and making the site's rows (on web-1, as an operator would)")
        self.run_on("web-1", [sys.executable, "manage.py", "migrate", "--noinput"])
        upstream = f"http://{self.hosts['upstream'].address}:{UPSTREAM_PORT}/v1"
        made = self.run_on("web-1", [sys.executable, __file__, "site", upstream])
        self.site = json.loads(made.stdout.strip().splitlines()[-1])
        for name in WEB_HOSTS:
            self.start_web(name)
        for name in WORKER_HOSTS:
            self.start_worker(name)
        for name in self.beat_hosts:
            self.start_beat(name)
        self.start_proxy()
        self.wait_ready()
        self.say(f"ready in {time.monotonic() - started:.0f} s: {self.url}")

    def _network(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for index, (name, last) in enumerate(HOSTS.items()):
            address = str(self.subnet[last])
            netns = f"{self.tag}-{name}"
            data_dir = self.workdir / name
            data_dir.mkdir()
            self.hosts[name] = Host(name, address, netns, data_dir)
            outside, inside = f"{self.tag}v{index}", f"{self.tag}p{index}"
            sh("ip", "netns", "add", netns)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            sh("ip", "link", "set", inside, "netns", netns)
            sh("ip", "link", "set", outside, "master", self.bridge, "up")
            sh("ip", "-n", netns, "link", "set", inside, "name", "eth0")
            sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", netns, "link", "set", "eth0", "up")
            sh("ip", "-n", netns, "link", "set", "lo", "up")
        self.say(f"{len(HOSTS)} hosts on {self.bridge} ({self.subnet})")

    def _on(self, host: str, argv: list[str]) -> list[str]:
        """argv as run on `host`: in its network namespace, under its own host name."""
        return [
            "ip", "netns", "exec", self.hosts[host].netns,
            "unshare", "--uts", "--",
            "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv,
        ]  # fmt: skip

    def launch(self, host: str, name: str, argv: list[str], env: dict | None = None) -> Process:
        log = self.workdir / "logs" / f"{host}-{name}.log"
        with log.open("a") as out:
            popen = subprocess.Popen(
                self._on(host, argv),
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C reaches the orchestrator only: it stops them
            )
        process = Process(name, popen, log)
        self.hosts[host].processes[name] = process
        return process

    def run_on(self, host: str, argv: list[str], env: dict | None = None, timeout=300):
        done = subprocess.run(
            self._on(host, argv),
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` on {host} failed:\n{done.stdout}{done.stderr}")
        return done

    def procfile(self, host: str, process: str, name: str, env: dict | None = None) -> Process:
        return self.launch(host, name, ["bash", "-c", f"exec {procfile_line(process)}"], env)

    def start_postgres(self, first: bool = False) -> None:
        data = self.hosts["data"]
        pgdata, sockets = data.data_dir / "pg", data.data_dir / "pg-sockets"
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        binaries = postgres_bin()
        assert binaries is not None
        if first:
            for folder in (pgdata, sockets):
                folder.mkdir()
                shutil.chown(folder, "postgres", "postgres")
            data.data_dir.chmod(0o755)
            self.run_on(
                "data",
                [*as_postgres, str(binaries / "initdb"), "-D", str(pgdata), "-U", "postgres"]
                + ["-A", "trust", "-E", "UTF8", "--no-sync"],
            )
            with (pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.subnet} trust\n")
        # Enough for every pool at its cap (docs/DEPLOY.md, Sizing) and a few more.
        max_connections = 8 * int(self.env.get("DATABASE_POOL_SIZE", "20")) + 20
        self.launch(
            "data",
            "postgres",
            [*as_postgres, str(binaries / "postgres"), "-D", str(pgdata)]
            + ["-c", f"listen_addresses={data.address}", "-c", "port=5432"]
            + ["-c", f"unix_socket_directories={sockets}"]
            + ["-c", f"max_connections={max_connections}"],
        )
        self.wait(lambda: self.sql("select 1", db="postgres"), "PostgreSQL on the data host", 60)
        if first:
            self.sql("create role fusionroom login", db="postgres", autocommit=True)
            self.sql("create database fusionroom owner fusionroom", db="postgres", autocommit=True)
        self.say(f"PostgreSQL at {data.address}:5432 (max_connections {max_connections})")

    def stop_postgres(self) -> None:
        process = self.hosts["data"].processes.pop("postgres")
        process.popen.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
        process.popen.wait(60)

    def restart_postgres(self) -> None:
        self.stop_postgres()
        self.start_postgres()

    def start_redis(self) -> None:
        data = self.hosts["data"]
        self.launch(
            "data",
            "redis",
            ["redis-server", "--bind", data.address, "--port", "6379", "--save", ""]
            + ["--appendonly", "no", "--protected-mode", "no", "--maxmemory-policy", "noeviction"],
        )
        self.wait(lambda: self.redis().ping(), "Redis on the data host", 30)

    def start_upstream(self) -> None:
        upstream = self.hosts["upstream"]
        argv = [sys.executable, __file__, "upstream", upstream.address, str(UPSTREAM_PORT)]
        process = self.launch("upstream", "scripted", argv + self.script.argv())
        self.wait(lambda: "scripted upstream on" in process.log.read_text(), "the upstream", 30)

    def start_web(self, host: str) -> Process:
        env = {"WEB_ADDRESS": self.hosts[host].address, "WEB_PORT": str(WEB_PORT)}
        env["FUSIONROOM_DATA_DIR"] = str(self.hosts[host].data_dir)
        return self.procfile(host, "web-private", "daphne", env)

    def start_worker(self, host: str) -> Process:
        env = {"FUSIONROOM_DATA_DIR": str(self.hosts[host].data_dir)}
        return self.procfile(host, "worker", "worker", env)

    def start_beat(self, host: str, name: str = "beat") -> Process:
        env = {"FUSIONROOM_DATA_DIR": str(self.hosts[host].data_dir)}
        return self.procfile(host, "beat", name, env)

    def start_proxy(self) -> None:
        proxy = self.hosts["proxy"]
        folder = proxy.data_dir
        cert, key = folder / "cert.pem", folder / "key.pem"
        sh(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={proxy.address}", "-keyout", str(key), "-out", str(cert),
        )  # fmt: skip
        (folder / "staticfiles").mkdir()  # nothing collected: /static/ falls through to the app
        text = (ROOT / "deploy/nginx.conf").read_text()
        # The one change: the upstream lists the web hosts' addresses, as the file's
        # comment says for web processes on other hosts.
        servers = "".join(f"    server {self.hosts[h].address}:{WEB_PORT};\n" for h in WEB_HOSTS)
        text, count = re.subn(
            r"(upstream fusionroom_web \{\n)(?:    server unix:[^\n]*\n)+", rf"\1{servers}", text
        )
        if count != 1:
            raise RuntimeError("deploy/nginx.conf's upstream block is not where it was")
        variables = {
            "FR_SERVER_NAME": proxy.address,
            "FR_HTTP_PORT": "80",
            "FR_HTTPS_PORT": "443",
            "FR_TLS_CERT": str(cert),
            "FR_TLS_KEY": str(key),
            "FR_RUN_DIR": str(folder),
            "FR_STATIC_ROOT": str(folder / "staticfiles"),
        }
        (folder / "site.conf").write_text(site_conf(text, variables))
        main = nginx_main(folder, folder / "site.conf")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.launch(
            "proxy", "nginx", [nginx, "-c", str(main), "-e", str(folder / "nginx-error.log")]
        )

    def wait_ready(self) -> None:
        import httpx

        def healthy() -> bool:
            return httpx.get(f"{self.url}/healthz", verify=False, timeout=5).status_code == 200

        # Each web host answers on its own before nginx is asked anything: a request
        # nginx sends to a host still starting marks that host failed for fail_timeout
        # (10 s), and a load begun within it all went to the other host.
        for name in WEB_HOSTS:
            self.wait(lambda n=name: self.web_answers(n), f"Daphne on {name}", 120)
        self.wait(healthy, "/healthz through nginx", 60)
        for name in WORKER_HOSTS:
            self.wait(lambda n=name: self.worker_answers(n), f"the worker on {name}", 90)

    def worker_answers(self, host: str) -> bool:
        """The worker of `host` (`worker@<host>`, Procfile.production's -n) answers a ping."""
        from celery import Celery

        app = Celery(broker=self.env["REDIS_URL"])
        try:
            return bool(app.control.ping(destination=[f"worker@{host}"], timeout=1.0))
        finally:
            app.close()

    def web_answers(self, host: str) -> bool:
        import httpx

        url = f"http://{self.hosts[host].address}:{WEB_PORT}/healthz"
        headers = {"Host": self.hosts["proxy"].address}
        return httpx.get(url, headers=headers, timeout=5).status_code == 200

    def wait(self, check: Callable[[], object], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for host in self.hosts.values():
                for process in host.processes.values():
                    if process.popen.poll() is not None:
                        tail = process.log.read_text()[-2000:]
                        raise RuntimeError(
                            f"{process.name} on {host.name} exited ({process.popen.returncode}) "
                            f"while waiting for {what}:\n{tail}"
                        )
            try:
                if check():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not ready after {timeout:g} s")
            time.sleep(0.2)

    # -- reading the cluster from outside

    def sql(self, query: str, params=(), db: str = "fusionroom", autocommit: bool = False):
        import psycopg

        address = self.hosts["data"].address
        with psycopg.connect(
            host=address, port=5432, user="postgres", dbname=db, connect_timeout=5,
            autocommit=autocommit,
        ) as connection:  # fmt: skip
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def redis(self):
        import redis

        return redis.Redis(host=self.hosts["data"].address, port=6379, socket_timeout=5)

    def connections(self) -> dict[str, int]:
        """The database connections each host holds now (pg_stat_activity)."""
        by_address = {h.address: h.name for h in self.hosts.values()}
        rows = self.sql(
            "select host(client_addr), count(*) from pg_stat_activity "
            "where datname = 'fusionroom' and client_addr is not null group by 1",
            db="postgres",
        )
        return {by_address.get(address, address): count for address, count in rows}

    def cpu(self) -> dict[str, float]:
        """CPU seconds each host's processes have spent so far."""
        return {name: sum(_cpu_of(pid) for pid in host.pids()) for name, host in self.hosts.items()}

    # -- faults

    def kill_host(self, name: str) -> None:
        """SIGKILL every process of the host, as a machine that loses power."""
        host = self.hosts[name]
        for _ in range(5):  # a process may fork while we kill
            pids = host.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for process in host.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)
        host.processes.clear()
        self.say(f"killed every process of {name}")

    # -- stopping

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        # Ctrl+C again while stopping must not leave half of it behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._stop_processes()
            for host in self.hosts.values():
                sh("ip", "netns", "del", host.netns, check=False)
            if self._made_bridge:
                sh("ip", "link", "del", self.bridge, check=False)
            workdir = getattr(self, "workdir", None)
            if workdir is not None:
                if self.logs_to is not None:
                    self.logs_to.mkdir(parents=True, exist_ok=True)
                    for log in (workdir / "logs").glob("*.log"):
                        shutil.copy(log, self.logs_to / log.name)
                    for name in ("nginx-error.log", "nginx-access.log"):
                        if (workdir / "proxy" / name).exists():
                            shutil.copy(workdir / "proxy" / name, self.logs_to / f"proxy-{name}")
                shutil.rmtree(workdir, ignore_errors=True)
            self.say("stopped: processes, namespaces, bridge and temporary folder are gone")
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_processes(self) -> None:
        processes = [p for host in self.hosts.values() for p in host.processes.values()]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(max(0.1, deadline - time.monotonic()))
        for host in self.hosts.values():  # what would not stop, and whatever it forked
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)
        for host in self.hosts.values():
            host.processes.clear()


def clean() -> list[str]:
    """Remove what a cluster killed outright (SIGKILL) left: its namespaces'
    processes, the namespaces, its links, its temporary folder."""
    removed = []
    for line in sh("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if re.fullmatch(rf"{PREFIX}[0-9a-f]{{4}}-[a-z0-9-]+", name):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in sh("ip", "-o", "link", "show").stdout.splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if re.fullmatch(rf"{PREFIX}[0-9a-f]{{4}}(br|v\d+)", link):
            sh("ip", "link", "del", link, check=False)
            removed.append(link)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}????-*"):
        if re.fullmatch(rf"{PREFIX}[0-9a-f]{{4}}-\w+", folder.name) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


# --- the load ------------------------------------------------------------------------


@dataclass
class Request:
    index: int
    run_id: int | None = None
    text: str = ""
    error: str = ""
    ended: float = 0.0


@dataclass
class LoadResult:
    requests: list[Request]
    wall_s: float
    cpu: dict[str, float]  # CPU seconds each host spent during the load
    peak_connections: dict[str, int]  # per host, at most, during the load
    peak_total_connections: int
    runs: list[dict]  # each run's row, its answers, what its stream carried
    killed: list[str]  # the hosts killed during the load
    killed_at_s: float | None = None  # from the start of the load
    killed_wall: float | None = None  # time.time() of the kill

    def by_status(self, status: str) -> list[dict]:
        return [run for run in self.runs if run["status"] == status]

    @property
    def stuck(self) -> list[dict]:
        return [run for run in self.runs if run["status"] in ACTIVE]

    @property
    def lost_text(self) -> list[str]:
        """Answers whose saved text is not what their conversation's stream carried,
        or is not (a beginning of) what the upstream sent; and API callers told less
        than the run saved."""
        return [problem for run in self.runs for problem in run["problems"]]

    def overheads_ms(self) -> list[float]:
        return [run["overhead_ms"] for run in self.runs if run["overhead_ms"] is not None]


async def _stream_one(client, cluster: Cluster, index: int) -> Request:
    request = Request(index)
    body = {
        "model": cluster.site["model"],
        "stream": True,
        "messages": [{"role": "user", "content": f"Question {index}: how long is a string?"}],
    }
    headers = {"Authorization": f"Bearer {cluster.site['api_key']}"}
    try:
        async with client.stream(
            "POST", f"{cluster.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                request.error = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
                return request
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:
                    request.error = str((chunk["error"] or {}).get("message") or chunk["error"])
                if request.run_id is None and str(chunk.get("id", "")).startswith(
                    "chatcmpl-fusion-"
                ):
                    request.run_id = int(chunk["id"].rsplit("-", 1)[1])
                for choice in chunk.get("choices") or []:
                    request.text += (choice.get("delta") or {}).get("content") or ""
    except Exception as exc:  # an answer the load could not read is reported, not fatal
        request.error = f"{type(exc).__name__}: {exc}"
    request.ended = time.monotonic()
    return request


def calls_ended(cluster: Cluster, since_run: int) -> int:
    rows = cluster.sql(
        "select count(*) from chat_answer a join chat_run r on r.id = a.run_id "
        "where r.id > %s and a.status in ('done', 'failed', 'cancelled', 'late', 'skipped')",
        (since_run,),
    )
    return rows[0][0]


def run_load(
    cluster: Cluster,
    runs: int,
    *,
    kill_worker_at: float | None = None,
    kill_when: Callable[[], bool] | None = None,
    kill: Callable[[], None] | None = None,
    timeout_s: float = 600,
) -> LoadResult:
    """`runs` streamed fusion runs at once through nginx; then every run's row,
    answers and stream, read from PostgreSQL and Redis. `kill_worker_at` (0-1):
    SIGKILL worker-1 once that share of the load's model calls have ended. Or,
    for tests: `kill()` once `kill_when()` is true."""
    import httpx

    calls_per_run = 3 + 2  # seats, judge, synthesizer
    last_run = cluster.sql("select coalesce(max(id), 0) from chat_run")[0][0]
    if kill_worker_at is not None:
        threshold = kill_worker_at * runs * calls_per_run
        kill_when = lambda: calls_ended(cluster, last_run) >= threshold  # noqa: E731
        kill = lambda: cluster.kill_host("worker-1")  # noqa: E731
    peak: dict[str, int] = {}
    peak_total = [0]
    cpu_at_kill: dict[str, float] = {}
    killed: list[str] = []
    stop = threading.Event()
    started = time.monotonic()
    killed_at: list[float] = []
    killed_wall: list[float] = []

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                now = cluster.connections()
                for host, count in now.items():
                    peak[host] = max(peak.get(host, 0), count)
                peak_total[0] = max(peak_total[0], sum(now.values()))
            if kill is not None and kill_when is not None and not killed_at:
                with contextlib.suppress(Exception):
                    if kill_when():
                        cpu_at_kill.update(cluster.cpu())
                        before = {n for n, h in cluster.hosts.items() if h.processes}
                        killed_at.append(time.monotonic() - started)  # once, even if it fails
                        killed_wall.append(time.time())
                        kill()
                        killed.extend(
                            sorted(before - {n for n, h in cluster.hosts.items() if h.processes})
                        )
            stop.wait(0.25)

    async def fire() -> list[Request]:
        limits = httpx.Limits(max_connections=runs + 10, max_keepalive_connections=runs + 10)
        timeout = httpx.Timeout(timeout_s, connect=30)
        async with httpx.AsyncClient(verify=False, timeout=timeout, limits=limits) as client:
            tasks = [asyncio.create_task(_stream_one(client, cluster, i)) for i in range(runs)]
            # One deadline for the whole load: a stream that never ends is a stuck run.
            await asyncio.wait(tasks, timeout=timeout_s)
            made = []
            for index, task in enumerate(tasks):
                if task.done():
                    made.append(task.result())
                else:
                    task.cancel()
                    made.append(Request(index, error=f"no end within {timeout_s:g} s"))
            return made

    cpu_before = cluster.cpu()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        requests = asyncio.run(fire())
    finally:
        stop.set()
        watcher.join(10)
    wall = max((r.ended for r in requests if r.ended), default=time.monotonic()) - started
    cpu_after = cluster.cpu()
    cpu = {}
    for name, before in cpu_before.items():
        after = cpu_at_kill.get(name) if name in killed else cpu_after.get(name)
        cpu[name] = max(0.0, (after or 0.0) - before)
    return LoadResult(
        requests=requests,
        wall_s=wall,
        cpu=cpu,
        peak_connections=peak,
        peak_total_connections=peak_total[0],
        runs=read_runs(cluster, last_run, requests),
        killed=killed,
        killed_at_s=killed_at[0] if killed_at else None,
        killed_wall=killed_wall[0] if killed_wall else None,
    )


def stream_deltas(cluster: Cluster, conversation: int) -> dict[int, list[dict]]:
    """What the conversation's Redis Stream carried for each answer: its deltas."""
    carried: dict[int, list[dict]] = {}
    for _, fields in cluster.redis().xrange(f"fr:conversation:{conversation}:events"):
        event = json.loads(fields[b"e"])
        if event.get("type") == "answer.delta":
            carried.setdefault(event["answer"], []).append(event)
    return carried


def read_runs(cluster: Cluster, since_run: int, requests: list[Request]) -> list[dict]:
    script = cluster.script
    expected = {"seat": script.seat_text(), "synthesizer": script.synth_text()}
    rows = cluster.sql(
        "select r.id, r.status, r.failure_reason, r.failure_detail, r.stage_ms, m.conversation_id, "
        "extract(epoch from r.finished_at) "
        "from chat_run r join chat_message m on m.id = r.message_id where r.id > %s order by r.id",
        (since_run,),
    )
    by_run = {r.run_id: r for r in requests if r.run_id is not None}
    runs = []
    for run_id, status, reason, detail, stage_ms, conversation, finished in rows:
        answers = cluster.sql(
            "select id, role, status, text, latency_ms from chat_answer where run_id = %s",
            (run_id,),
        )
        carried = stream_deltas(cluster, conversation)
        problems = []
        for answer_id, role, answer_status, text, _ in answers:
            deltas = carried.get(answer_id, [])
            streamed = "".join(d["text"] for d in deltas)
            seqs = [d["seq"] for d in deltas]
            if role in expected and not expected[role].startswith(text):
                problems.append(f"run {run_id}: {role} answer {answer_id} saved {text!r}")
            if role in expected and answer_status == "done" and text != expected[role]:
                problems.append(f"run {run_id}: {role} answer {answer_id} done but partial")
            in_order = seqs == list(range(1, len(seqs) + 1))
            if role in expected and (text != streamed or not in_order):
                # An answer's deltas go to its conversation's stream; what a
                # reader saw there must be what was kept.
                problems.append(
                    f"run {run_id}: answer {answer_id} saved {len(text)} characters, "
                    f"its stream carried {len(streamed)} (seqs {seqs[:3]}…)"
                )
        request = by_run.get(run_id)
        synth = next((a for a in answers if a[1] == "synthesizer"), None)
        if request is not None and synth is not None and not synth[3].startswith(request.text):
            problems.append(f"run {run_id}: the API caller got text the run did not save")
        if status == "done" and request is not None and request.text != script.synth_text():
            problems.append(f"run {run_id}: done, but the API caller got {request.text!r}")
        overhead = None
        if status == "done":
            kept = [a[4] for a in answers if a[1] == "seat" and a[2] == "done" and a[4]]
            others = sum(a[4] or 0 for a in answers if a[1] != "seat")
            if kept and "total" in (stage_ms or {}):
                overhead = stage_ms["total"] - (max(kept) + others)
        runs.append(
            {
                "id": run_id,
                "status": status,
                "failure": reason,
                "detail": detail,
                "finished": float(finished) if finished is not None else None,
                "overhead_ms": overhead,
                "problems": problems,
                "api_error": request.error if request else "(no API request named this run)",
            }
        )
    return runs


# --- the table -------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def table(result: LoadResult, runs: int) -> str:
    overheads = result.overheads_ms()
    done, failed = result.by_status("done"), result.by_status("failed")
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| fusion runs (3 seats + judge + synthesizer) | {runs} |",
        f"| done / failed in words / stuck | {len(done)} / {len(failed)} / {len(result.stuck)} |",
        f"| wall time (s) | {result.wall_s:.1f} |",
        f"| overhead p50 / p99 (ms) | {pct(overheads, 50):.0f} / {pct(overheads, 99):.0f} |",
    ]
    for host in ("proxy", "web-1", "web-2", "worker-1", "worker-2", "data"):
        note = " (killed)" if host in result.killed else ""
        cpu_ms = result.cpu.get(host, 0.0) * 1000 / max(runs, 1)
        lines.append(f"| CPU per run, {host}{note} (ms) | {cpu_ms:.0f} |")
    per_host = ", ".join(f"{h} {n}" for h, n in sorted(result.peak_connections.items()))
    lines.append(f"| database connections at most, per host | {per_host or 'none seen'} |")
    lines.append(f"| database connections at most, all hosts | {result.peak_total_connections} |")
    lines.append(f"| answers with lost text | {len(result.lost_text)} |")
    if result.killed:
        at = f" at {result.killed_at_s:.1f} s" if result.killed_at_s is not None else ""
        lines.append(f"| killed{at} | {', '.join(result.killed)} |")
    return "\n".join(lines)


def failures(result: LoadResult) -> str:
    """The failed runs, named, with their words."""
    named = [
        f"- run {run['id']}: {run['failure']}: {run['detail']}"
        for run in result.by_status("failed")
    ]
    named += [f"- run {run['id']}: STUCK in {run['status']}" for run in result.stuck]
    named += [f"- {problem}" for problem in result.lost_text]
    return "\n".join(named)


# --- the command line ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["upstream"]:
        parser = argparse.ArgumentParser(prog="cluster.py upstream")
        parser.add_argument("address")
        parser.add_argument("port", type=int)
        for name, value in vars(Script()).items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
        options = vars(parser.parse_args(argv[1:]))
        address, port = options.pop("address"), options.pop("port")
        serve_upstream(address, port, Script(**options))
        return 0
    if argv[:1] == ["site"]:
        print(json.dumps(setup_site(argv[1])))
        return 0
    if argv[:1] == ["clean"]:
        if reason := unavailable():
            raise SystemExit(reason)
        removed = clean()
        print("removed: " + (", ".join(removed) or "nothing"))
        return 0

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="concurrent fusion runs (20)")
    parser.add_argument(
        "--kill-worker-at",
        type=float,
        metavar="FRACTION",
        help="SIGKILL every process of worker-1 once this share of the model calls ended",
    )
    parser.add_argument("--seat-chunks", type=int, default=12, help="words per seat answer")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between words")
    parser.add_argument("--heartbeat-ttl", type=int, default=30, help="RUN_HEARTBEAT_TTL_S")
    parser.add_argument("--pool-size", type=int, help="DATABASE_POOL_SIZE (env.example's: 20)")
    parser.add_argument("--logs", type=Path, help="copy every host's logs here at the end")
    parser.add_argument(
        "--doc", action="store_true", help="write the table into docs/PERFORMANCE.md"
    )
    options = parser.parse_args(argv)
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    if options.kill_worker_at is not None and not 0 < options.kill_worker_at < 1:
        parser.error("--kill-worker-at is a share of the load, between 0 and 1 (0.5: halfway)")
    if reason := unavailable():
        raise SystemExit(f"cluster.py: {reason}")

    # SIGTERM stops it as Ctrl+C does: through the `finally` that tears it down.
    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    script = Script(seat_chunks=options.seat_chunks, synth_chunks=options.seat_chunks)
    script.gap = options.gap
    load_average = os.getloadavg()[0]
    with Cluster(
        script=script,
        heartbeat_ttl_s=options.heartbeat_ttl,
        worker_concurrency=max(200, options.runs + 10),
        pool_size=options.pool_size,
        log_level="WARNING",
        logs_to=options.logs,
    ) as cluster:
        cluster.say(f"{options.runs} fusion runs through {cluster.url}/v1/chat/completions")
        result = run_load(
            cluster,
            options.runs,
            kill_worker_at=options.kill_worker_at,
            timeout_s=options.heartbeat_ttl * 2 + 300,
        )
        keys = unexpiring_keys(cluster)
    text = table(result, options.runs)
    print(text)
    if named := failures(result):
        print("\n" + named)
    print(f"\nRedis keys of the site without an expiry after the load: {keys or 'none'}")
    if options.doc:
        write_doc(options, argv, text, failures(result), load_average)
    return 1 if result.stuck or result.lost_text else 0


# Celery's own keys: the queue and its bindings live as long as the site.
BROKER_KEYS = re.compile(r"^(celery|_kombu\..*|unacked.*|celery-task-meta-.*)$")


def unexpiring_keys(cluster: Cluster) -> list[str]:
    """The site's Redis keys (`fr:`) that would never expire, and any other key
    that is not Celery's broker's."""
    client = cluster.redis()
    found = []
    for key in client.scan_iter(count=1000):
        name = key.decode()
        if BROKER_KEYS.match(name):
            continue
        if client.ttl(key) == -1:
            found.append(name)
    return sorted(found)


def write_doc(options, argv, text: str, named: str, load_average: float) -> None:
    import platform

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import stack  # benchmarks/stack.py: the part of PERFORMANCE.md this script owns

    command = "scripts/cluster.py " + " ".join(argv)
    body = (
        f"## A cluster of hosts: `{command.strip()}`\n\n"
        f"Run on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load_average:.1f} at the start. "
        "Seven network namespaces on one bridge (proxy, two web hosts, two worker hosts of "
        "one Celery process each, a data host with PostgreSQL and Redis, a scripted "
        "upstream), every process as Procfile.production starts it, nginx as "
        "deploy/nginx.conf is written. The runs go through nginx over HTTPS to "
        "/v1/chat/completions, streamed.\n\n"
        f"{text}\n" + (f"\nRuns that did not end done:\n\n{named}\n" if named else "")
    )
    stack.write_section("cluster " + " ".join(argv), body)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the cluster's `finally` has stopped everything by now
        print("cluster.py: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)

"""The production guide, tested (docs/DEPLOY.md).

`check --deploy` runs under deploy/env.example, the environment the guide gives, and
deploy/nginx.conf runs in Debian's nginx as written (rendered only through its
documented FR_* variables) in front of Daphnes and a worker started from
Procfile.production's own lines: a page, a websocket and an SSE stream through it.
"""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.test import Client
from websockets.sync.client import connect

from chat.api.keys import create_key
from chat.models import Conversation
from panels.models import CatalogModel, Provider
from tests.conftest import (
    ARTIFACTS,
    child_env,
    database_url,
    free_port,
    start,
    stop,
    wait_for,
)
from tests.scripted_server import Reply, ScriptedServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from cluster import guide_env, nginx_main, procfile_line, site_conf  # noqa: E402  (scripts/cluster.py)

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def test_check_deploy_is_clean_under_the_guides_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(guide_env(), FUSIONROOM_DATA_DIR=str(tmp_path))
    env["DJANGO_SETTINGS_MODULE"] = "fusionroom.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_embedded_default_keeps_plain_http(tmp_path):
    """`make run` serves plain HTTP: none of the HTTPS settings may be on there."""
    env = {k: v for k, v in os.environ.items() if k not in ("HTTPS", "DJANGO_SETTINGS_MODULE")}
    env.update(DEBUG="true", FUSIONROOM_DATA_DIR=str(tmp_path))
    code = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.splitlines()[-1].split() == ["False", "False", "False", "0"], result.stderr


def render_site(path: Path, variables: dict[str, str]) -> None:
    """deploy/nginx.conf with its FR_* variables filled in, as envsubst does."""
    text = (ROOT / "deploy/nginx.conf").read_text()
    documented = set(re.findall(r"^#\s+(FR_[A-Z_]+)", text, re.M))
    documented |= set(re.findall(r"\$(FR_[A-Z_]+)", text.partition("upstream")[0]))
    assert set(variables) == documented, "render exactly the variables the file documents"
    path.write_text(site_conf(text, variables))


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_nginx_as_written_passes_pages_websockets_and_sse_unbuffered(tmp_path, alice, redis_ready):
    if not os.path.exists(NGINX):
        pytest.skip("no nginx: run scripts/ensure-nginx.sh (make test does)")
    run_dir, static_root = tmp_path / "run", tmp_path / "static"
    run_dir.mkdir()
    (static_root / "probe").mkdir(parents=True)
    (static_root / "probe/collected.txt").write_text("collected by collectstatic")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    https_port, http_port = free_port(), free_port()
    origin = f"https://localhost:{https_port}"
    site = tmp_path / "fusionroom.conf"
    render_site(
        site,
        {
            "FR_SERVER_NAME": "localhost",
            "FR_HTTP_PORT": str(http_port),
            "FR_HTTPS_PORT": str(https_port),
            "FR_TLS_CERT": str(cert),
            "FR_TLS_KEY": str(key),
            "FR_RUN_DIR": str(run_dir),
            "FR_STATIC_ROOT": str(static_root),
        },
    )
    env = child_env(
        DATABASE_URL=database_url(connection.settings_dict),
        LOCAL_MODELS_ENABLED="false",
        HTTPS="true",
        ALLOWED_HOSTS="localhost",
        CSRF_TRUSTED_ORIGINS=origin,
        FUSIONROOM_RUN_DIR=str(run_dir),
        WORKER_CONCURRENCY="8",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    processes = []
    try:
        for process in ("web1", "web2", "worker"):
            command = ["bash", "-c", f"exec {procfile_line(process)}"]
            processes.append((f"deploy-{process}", start(f"deploy-{process}", command, env)))
        main = nginx_main(tmp_path, site)
        nginx = start("deploy-nginx", [NGINX, "-c", str(main), "-e", str(tmp_path / "e.log")], env)
        processes.append(("deploy-nginx", nginx))
        web = httpx.Client(base_url=origin, verify=False, timeout=30)
        wait_for(
            lambda: web.get("/healthz").status_code == 200,
            "/healthz through nginx (both Daphnes' sockets, the worker)",
            90,
            processes,
        )
        for sock in ("web-1.sock", "web-2.sock"):
            assert (run_dir / sock).is_socket()

        # A page, over TLS, with what HTTPS=true turns on.
        page = web.get("/accounts/login/")
        assert page.status_code == 200 and "<form" in page.text
        assert page.headers["strict-transport-security"].startswith("max-age=31536000")
        assert "secure" in page.headers["set-cookie"].lower()
        plain = httpx.get(f"http://localhost:{http_port}/accounts/login/")
        assert plain.status_code == 301
        # To the standard HTTPS port, which production's FR_HTTPS_PORT is.
        assert plain.headers["location"] == "https://localhost/accounts/login/"
        assert httpx.get(f"http://localhost:{http_port}/healthz").status_code == 200
        collected = web.get("/static/probe/collected.txt")
        assert collected.text == "collected by collectstatic"
        assert web.get("/static/css/app.css").status_code == 200  # not collected: the app

        # The conversation's websocket, upgraded through nginx.
        with ScriptedServer() as upstream:
            provider = Provider.objects.create(name="Upstream", base_url=upstream.base_url)
            model = CatalogModel.objects.create(
                provider=provider, model_id="scripted-1", display_name="S", context_length=8192
            )
            conversation = Conversation.objects.create(owner=alice, model=model)
            browser = Client()
            browser.force_login(alice)
            cookie = f"sessionid={browser.cookies['sessionid'].value}"
            tls = ssl.create_default_context(cafile=str(cert))
            ws_url = f"wss://localhost:{https_port}/ws/conversations/{conversation.pk}/"
            with connect(
                ws_url, ssl=tls, additional_headers={"Cookie": cookie, "Origin": origin}
            ) as socket:
                first = json.loads(socket.recv(timeout=30))
            assert first["type"] == "snapshot"

            # An SSE stream of /v1/chat/completions, chunk by chunk through nginx.
            gap = 0.8
            upstream.enqueue(Reply.stream(["one ", "two ", "three"], delay=gap))
            key = create_key(alice, "deploy")[1]
            body = {"model": "scripted-1", "stream": True, "messages": []}
            body["messages"].append({"role": "user", "content": "count"})
            arrivals: list[tuple[float, str]] = []
            with web.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            ) as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    for choice in json.loads(line[6:]).get("choices", []):
                        if text := (choice.get("delta") or {}).get("content"):
                            arrivals.append((time.monotonic(), text))
        assert "".join(text for _, text in arrivals) == "one two three"
        # Buffered, the pieces would arrive together at the end; unbuffered, each one
        # arrives as the upstream sends it, about `gap` after the one before.
        spread = arrivals[-1][0] - arrivals[0][0]
        assert spread > gap, f"the stream arrived in one piece through nginx: {arrivals}"
    finally:
        stop(processes)
        for name in ("nginx-error.log", "nginx-access.log", "e.log"):
            if (tmp_path / name).exists():
                shutil.copy(tmp_path / name, ARTIFACTS / f"deploy-{name}")

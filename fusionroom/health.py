"""GET /healthz: is every part of the running system ready?

Checks run in parallel, each with a short timeout, so a dead part costs about a
second, not the sum of all timeouts. Their results are kept for CACHE_S seconds: a
page that anyone may load must not make every worker answer a ping each time.

Anyone sees which parts are ok or failing; only staff see the details (error texts
name hosts, ports and users; worker names name machines).
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis
from django.conf import settings
from django.db import connection, connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from panels import local_models

TIMEOUT_S = 2.0
CACHE_S = 5.0


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return f"{connection.vendor} ok"
    finally:
        connections.close_all()


def check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=TIMEOUT_S)
    try:
        client.ping()
        return "ok"
    finally:
        client.close()


def check_worker() -> str:
    from fusionroom.celery import app

    replies = app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 1 s")
    names = sorted(name for reply in replies for name in reply)
    return f"{len(replies)} worker(s) answered: {', '.join(names)}"


class ModelDown(Exception):
    pass


def check_model(model: local_models.LocalModel) -> str:
    """Down, loading or answering: said with the model's name and how to start it."""
    try:
        response = httpx.get(f"{model.base_url}/models", timeout=TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ModelDown(
            f"{model.display_name} is not answering at {model.base_url} "
            f"({type(exc).__name__}: {exc}). It may still be loading; otherwise start it "
            f"with `python manage.py serve_model {model.key}` (make run starts it)."
        ) from None
    return f"{model.display_name} serving at {model.base_url}"


def _run(check, *args) -> dict:
    started = time.monotonic()
    try:
        detail = check(*args)
        ok = True
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        ok = False
    return {"ok": ok, "detail": detail, "ms": int((time.monotonic() - started) * 1000)}


def _check_all() -> dict[str, dict]:
    checks = {
        "database": (check_database,),
        "redis": (check_redis,),
        "worker": (check_worker,),
        **{f"model:{m.key}": (check_model, m) for m in local_models.enabled()},
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(_run, *spec) for name, spec in checks.items()}
        return {name: future.result() for name, future in futures.items()}


class _Cache:
    """The last results, for CACHE_S seconds. One check at a time: requests that
    arrive while one runs wait for its results instead of starting their own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.results: dict[str, dict] = {}
        self.taken = float("-inf")

    def results_now(self) -> dict[str, dict]:
        with self.lock:
            if time.monotonic() - self.taken >= CACHE_S:
                self.results, self.taken = _check_all(), time.monotonic()
            return self.results


cache = _Cache()


@never_cache
@require_GET
def healthz(request):
    results = cache.results_now()
    staff = request.user.is_authenticated and request.user.is_staff
    failing = [name for name, result in results.items() if not result["ok"]]
    body = {
        "status": "ok" if not failing else "failing",
        "failing": failing,
        # The bundled models that are down, by name (the rest of the app keeps working).
        "models_down": [
            m.display_name for m in local_models.enabled() if f"model:{m.key}" in failing
        ],
        "checks": {
            name: result if staff else {"ok": result["ok"], "ms": result["ms"]}
            for name, result in results.items()
        },
    }
    return JsonResponse(body, status=503 if failing else 200)

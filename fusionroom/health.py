"""GET /healthz: is every part of the running system ready?

Checks run in parallel, each with a short timeout, so a dead part costs about a
second, not the sum of all timeouts.
"""

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
    return f"{len(replies)} worker(s) answered"


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


@never_cache
@require_GET
def healthz(request):
    checks = {
        "database": (check_database,),
        "redis": (check_redis,),
        "worker": (check_worker,),
        **{f"model:{m.key}": (check_model, m) for m in local_models.enabled()},
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(_run, *spec) for name, spec in checks.items()}
        results = {name: future.result() for name, future in futures.items()}
    failing = [name for name, result in results.items() if not result["ok"]]
    body = {
        "status": "ok" if not failing else "failing",
        "failing": failing,
        # The bundled models that are down, by name (the rest of the app keeps working).
        "models_down": [
            m.display_name for m in local_models.enabled() if f"model:{m.key}" in failing
        ],
        "checks": results,
    }
    return JsonResponse(body, status=503 if failing else 200)

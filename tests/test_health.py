"""/healthz: anyone learns which parts are ok or failing; only staff read why (error
texts name hosts, ports and machines); and a burst of requests checks once."""

import json

import pytest
from django.contrib.auth import get_user_model

from fusionroom import health
from tests.conftest import PASSWORD
from tests.scripted_server import Reply, ScriptedServer


@pytest.fixture(autouse=True)
def fresh_results():
    health.cache.clear()
    yield
    health.cache.clear()


@pytest.mark.django_db
def test_anyone_learns_which_parts_fail_and_nothing_more(client, settings, redis_ready):
    settings.LOCAL_MODELS_PORT = 9  # nothing serves there
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert {"model:qwen2.5-coder-0.5b", "model:smollm2-135m"} <= set(body["failing"])
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert not body["checks"]["model:smollm2-135m"]["ok"]
    assert all(set(check) == {"ok", "ms"} for check in body["checks"].values())
    text = json.dumps(body)
    for secret in ("127.0.0.1", ":10", "Error", "worker(s)", "sqlite"):
        assert secret not in text, f"{secret!r} leaked to an anonymous visitor"


@pytest.mark.django_db
def test_staff_read_the_details(client, settings, redis_ready):
    settings.LOCAL_MODELS_PORT = 9
    staff = get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    client.force_login(staff)
    body = client.get("/healthz").json()
    detail = body["checks"]["model:smollm2-135m"]["detail"]
    assert "ConnectError" in detail and "127.0.0.1:10" in detail
    assert "no Celery worker answered" in body["checks"]["worker"]["detail"]


@pytest.mark.django_db
def test_a_burst_of_requests_checks_once(client, settings, redis_ready, monkeypatch):
    with ScriptedServer() as model_server:
        model_server.default = Reply.json(200, {"object": "list", "data": []})
        settings.LOCAL_MODELS_PORT = model_server.port  # the first model's server
        for _ in range(3):
            client.get("/healthz")
        assert len(model_server.requests) == 1
        monkeypatch.setattr(health, "CACHE_S", 0.0)  # the results have aged
        client.get("/healthz")
        assert len(model_server.requests) == 2


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_live_stack_is_healthy(live_stack):
    import httpx

    body = httpx.get(f"{live_stack.url}/healthz", timeout=10).json()
    assert body["status"] == "ok", body
    assert set(body["checks"]) == {
        "database",
        "redis",
        "worker",
        "model:qwen2.5-coder-0.5b",
        "model:qwen2.5-coder-1.5b",
        "model:smollm2-135m",
    }

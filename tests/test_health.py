import pytest


@pytest.mark.django_db
def test_health_names_the_failing_parts(client, settings, redis_ready):
    settings.LOCAL_MODELS_PORT = 9  # nothing serves there
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert {"model:qwen2.5-coder-0.5b", "model:smollm2-135m"} <= set(body["failing"])
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert "ConnectError" in body["checks"]["model:smollm2-135m"]["detail"]


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

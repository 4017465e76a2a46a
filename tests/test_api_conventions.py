"""The conventions an OpenAI client expects of every /v1 response, against the live
stack: X-Request-Id echoed (or made), the x-ratelimit-* numbers counting down,
and choices one written answer cannot honour refused with a 400 naming the field,
before any run starts."""

import re

import httpx
import openai
import pytest
import redis
from django.conf import settings

from chat.models import Run

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

MADE_ID = re.compile(r"req_[0-9a-f]{32}")


def test_the_request_id_is_echoed_or_made_on_every_response(live_stack, api_key, openai_client):
    given = {"X-Request-Id": "trace-42.a:b"}
    raw = openai_client.models.with_raw_response.list(extra_headers=given)
    assert raw.headers["x-request-id"] == "trace-42.a:b"
    made = openai_client.models.with_raw_response.list().headers["x-request-id"]
    assert MADE_ID.fullmatch(made)
    assert openai_client.models.with_raw_response.list().headers["x-request-id"] != made
    auth = {"Authorization": f"Bearer {api_key}"}
    url = f"{live_stack.url}/v1"
    for response in [
        httpx.post(f"{url}/chat/completions", content=b"{", headers={**auth, **given}),  # 400
        httpx.get(f"{url}/models", headers={"Authorization": "Bearer fr-no-no", **given}),  # 401
        httpx.post(  # 404
            f"{url}/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
            headers={**auth, **given},
        ),
        httpx.get(f"{url}/no-such-endpoint", headers=given),  # Django's own 404
    ]:
        assert response.status_code >= 400
        assert response.headers["x-request-id"] == "trace-42.a:b", response.status_code
    # Not a token: a new id rather than prose (or an injection) echoed into logs.
    for insane in ["two words", "x" * 129, ""]:
        response = httpx.get(f"{url}/models", headers={**auth, "X-Request-Id": insane})
        assert MADE_ID.fullmatch(response.headers["x-request-id"])
    # Only the API: the conversation's pages are not dressed as OpenAI's.
    assert "x-request-id" not in httpx.get(f"{live_stack.url}/healthz").headers


def test_rate_limit_headers_count_down_and_are_zero_when_refused(
    live_stack, alice, api_key, openai_client
):
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    first = openai_client.models.with_raw_response.list().headers
    bad = httpx.post(  # a refused completion counts as well
        f"{live_stack.url}/v1/chat/completions",
        json={"model": "fusion", "messages": []},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert bad.status_code == 400
    assert first["x-ratelimit-limit-requests"] == str(limit)
    assert first["x-ratelimit-remaining-requests"] == str(limit - 1)
    assert bad.headers["x-ratelimit-remaining-requests"] == str(limit - 2)
    assert re.fullmatch(r"\d+s", first["x-ratelimit-reset-requests"])
    assert 1 <= int(first["x-ratelimit-reset-requests"][:-1]) <= 60
    client_redis = redis.Redis.from_url(settings.REDIS_URL)
    client_redis.set(f"fr:ratelimit:user:{alice.pk}", limit, ex=30)
    client_redis.close()
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.models.list()
    headers = caught.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["retry-after"]) >= 1 and headers["x-request-id"]
    # A key that was never checked counted nothing, so it says nothing of the window.
    stranger = httpx.get(
        f"{live_stack.url}/v1/models", headers={"Authorization": "Bearer fr-no-no"}
    )
    assert stranger.status_code == 401
    assert "x-ratelimit-remaining-requests" not in stranger.headers


def test_several_choices_and_log_probabilities_are_refused_naming_the_param(openai_client):
    ask = {"model": "fusion", "messages": [{"role": "user", "content": "hi"}]}
    refusals = [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"seed": "7"}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ]
    for fields, param in refusals:
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.chat.completions.create(**ask, **fields)
        body = caught.value.body
        assert body["param"] == param, (fields, body)
        assert body["type"] == "invalid_request_error" and body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(**ask, n=2)
    assert "only one choice" in caught.value.body["message"]
    assert caught.value.body["code"] == "unsupported_parameter"
    assert not Run.objects.exists()  # nothing half-run

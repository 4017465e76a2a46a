"""The OpenAI-compatible API through the official `openai` client, against the live
stack (Daphne, a Celery worker, Redis) and the real local models."""

import time
from decimal import Decimal

import httpx
import openai
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.api.keys import create_key
from chat.engine import loop, pipeline
from chat.models import Run
from limits.models import Limits, Spend
from panels.models import CatalogModel, Panel, Provider, Seat
from tests.conftest import wait_until
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


@pytest.mark.models
def test_non_streamed_completion_through_the_local_panel(openai_client):
    response = openai_client.chat.completions.create(
        model="fusion/local", messages=[{"role": "user", "content": "Is 7 a prime number?"}]
    )
    answer = response.choices[0].message.content
    assert answer.strip() and response.choices[0].finish_reason in ("stop", "length")
    assert response.usage.total_tokens > 0
    fusion = response.model_extra["fusion"]
    # Local verifies: the 1.5B's answer and its samples (and a program, when the
    # question is a computation), every one a seat answer of the run.
    assert len(fusion["seats"]) >= 3 and {s["status"] for s in fusion["seats"]} == {"done"}
    run = Run.objects.get(pk=fusion["run"])
    assert run.synthesis.text == answer  # the run is in the user's history too
    assert run.message.conversation.owner.username == "alice"


@pytest.mark.models
def test_streamed_completion_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="fusion",
        stream=True,
        stream_options={"include_usage": True},
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What colour is the sky?"},
        ],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    run = Run.objects.get(pk=chunks[-1].model_extra["fusion"]["run"])
    assert run.synthesis.text == text


def test_models_lists_the_panels(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert {"fusion", "fusion/local"} <= ids


def test_errors_in_openai_form(openai_client, live_stack, api_key):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model="fusion/nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="fusion/local", messages=[])
    assert caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="fusion/local", messages=[{"role": "robot", "content": "hi"}]
        )
    assert caught.value.body["param"] == "messages[0].role"
    bad = openai.OpenAI(base_url=f"{live_stack.url}/v1", api_key="fr-nope-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    deep = httpx.post(
        f"{live_stack.url}/v1/chat/completions",
        json={"model": "fusion"},
        headers={"Authorization": f"Bearer {api_key}", "X-Fusion-Depth": "2"},
    )
    assert deep.status_code == 508 and deep.json()["error"]["type"] == "fusion_depth_exceeded"
    huge = httpx.post(
        f"{live_stack.url}/v1/chat/completions",
        content=b"x" * 5_000_000,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    garbage = httpx.post(
        f"{live_stack.url}/v1/chat/completions",
        content=b"{nope",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]["message"]


def test_a_revoked_key_and_someone_elses_private_panel(live_stack, api_key):
    from chat.models import ApiKey

    bob = get_user_model().objects.create_user("bob", password="pw-long-enough-1")
    alice_panel = Panel.objects.create(
        owner=bob, slug="bobs-secret", name="Secret", judge=CatalogModel.objects.first()
    )
    alice = openai.OpenAI(base_url=f"{live_stack.url}/v1", api_key=api_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        alice.chat.completions.create(
            model=f"fusion/{alice_panel.slug}", messages=[{"role": "user", "content": "hi"}]
        )
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    with pytest.raises(openai.AuthenticationError):
        alice.models.list()


def test_the_rate_limit_is_the_users_across_all_their_keys(live_stack, api_key):
    """A second key is no way around the limit: the 61st request of the minute is
    refused whichever of the user's keys sends it."""
    alice = get_user_model().objects.get(username="alice")
    second = create_key(alice, "second")[1]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"fr:ratelimit:user:{alice.pk}")
    client.close()
    url = f"{live_stack.url}/v1/chat/completions"
    statuses = [
        httpx.post(url, content=b"{", headers={"Authorization": f"Bearer {api_key}"}).status_code
        for _ in range(60)
    ]
    assert statuses == [400] * 60
    limited = httpx.post(url, content=b"{", headers={"Authorization": f"Bearer {second}"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "every API key of yours together" in limited.json()["error"]["message"]


def test_a_daily_budget_spent_in_the_conversation_refuses_the_api_with_its_numbers(
    live_stack, api_key
):
    """Spend counts across doors: a conversation run spends most of the day's budget, and
    the API then answers 402 in OpenAI's format, with the budget, what is spent and
    when it renews."""
    alice = get_user_model().objects.get(username="alice")
    kit = ScriptedPanel(seats=1, user=alice)
    try:
        CatalogModel.objects.filter(provider__name__startswith="Up ").update(
            input_price="0", output_price="1000"
        )
        Limits.objects.create(user=alice, daily_budget_usd="1", run_budget_usd="5")
        kit.seats[0].default = Reply.stream([f"{n}, " for n in range(700)])  # $0.70
        kit.judge.default = analysis_reply()
        kit.synthesizer.default = Reply.stream(["Done."])
        loop.run(pipeline.execute(kit.ask()))
        spent = sum(s.usd for s in Spend.objects.filter(user=alice))
        assert Decimal("0.7") < spent < Decimal("0.8")
        client = openai.OpenAI(base_url=f"{live_stack.url}/v1", api_key=api_key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(
                model=f"fusion/{kit.panel.slug}",
                messages=[{"role": "user", "content": "One more?"}],
            )
        assert refused.value.status_code == 402
        error = refused.value.body
        assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
        assert "daily budget on the site's models is $1.00" in error["message"]
        assert error["limit"]["period"] == "day" and error["limit"]["limit_usd"] == "1.0000"
        assert Decimal(error["limit"]["spent_usd"]) == spent
        assert error["limit"]["resets_at"] > timezone.now().isoformat()[:10]
        assert Run.objects.filter(message__conversation__panel=kit.panel).count() == 1
    finally:
        kit.close()


def test_a_vanished_stream_client_cancels_its_run(live_stack, api_key):
    kit = ScriptedPanel(seats=2, user=get_user_model().objects.get(username="alice"))
    try:
        for server in kit.seats:
            server.default = Reply.stream(["slow "], done=False, finish=None, hang=True)
        body = {
            "model": f"fusion/{kit.panel.slug}",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        url, headers = (
            f"{live_stack.url}/v1/chat/completions",
            {"Authorization": f"Bearer {api_key}"},
        )
        with httpx.stream("POST", url, timeout=30, headers=headers, json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith(":")  # the keep-alive comment came first
            wait_until(lambda: all(s.requests for s in kit.seats), 5, "every seat's request")
        hung_up = time.monotonic()  # leaving the block closed the connection
        run = Run.objects.filter(message__conversation__panel=kit.panel).get()
        wait_until(lambda: not Run.objects.get(pk=run.pk).is_active, 6, "the run to end")
        run.refresh_from_db()
        assert run.status == Run.Status.CANCELLED
        for server in kit.seats:
            assert server.disconnects[0] - hung_up < 2.0
    finally:
        kit.close()


def test_a_panel_calling_itself_ends_with_the_depth_error(live_stack, api_key):
    alice = get_user_model().objects.get(username="alice")
    own = Provider(name="This server", base_url=f"{live_stack.url}/v1")
    own.set_api_key(api_key)
    own.save()
    loop_model = CatalogModel.objects.create(
        provider=own, model_id="fusion/loop", display_name="Fusion loop"
    )
    loop = Panel.objects.create(owner=alice, slug="loop", name="Loop", judge=loop_model)
    Seat.objects.create(panel=loop, model=loop_model)
    client = openai.OpenAI(
        base_url=f"{live_stack.url}/v1", api_key=api_key, max_retries=0, timeout=120
    )
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="fusion/loop", messages=[{"role": "user", "content": "hi"}]
        )
    assert time.monotonic() - started < 60
    assert caught.value.status_code == 502
    assert "depth" in str(caught.value.body).lower()

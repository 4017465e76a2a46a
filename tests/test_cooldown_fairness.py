"""A site-wide model's cooldown is every user's: only the upstream's own faults may
start it. A seat's tighter time limits, a long answer, a bad request are the caller's
business and never switch a model off for everybody (panels/cooldown.py).

Against scripted upstreams on loopback and the test Redis database: the cooldown
record is read from Redis itself, not from the code that writes it.
"""

import asyncio

import httpx
import pytest
import redis as redis_sync
from django.conf import settings

from chat.models import Answer
from panels.calls import CallLimits, CallResult, RetryPolicy, Target, call
from panels.cooldown import Cooldowns
from panels.models import Seat
from panels.providers import ChatMessage, ChatRequest, Endpoint, ErrorKind
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = pytest.mark.usefixtures("redis_ready")

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),), max_tokens=16)
RETRY = RetryPolicy(max_retries=2, base_delay_s=0.01, max_delay_s=0.02)
# Far tighter than the site's defaults (120 s first token, 60 s idle, 600 s total).
TIGHT = CallLimits(connect_s=2, first_token_s=0.2, idle_s=0.2, total_s=0.5)


async def cooldown_keys(redis) -> list[str]:
    return sorted(k.decode() for k in await redis.keys("fr:cooldown:*"))


def target(server, site_wide=True, queues=False) -> Target:
    endpoint = Endpoint(kind="openai", base_url=server.base_url, name="Shared")
    return Target(1, "m", "Shared", endpoint, None, site_wide=site_wide, queues=queues)


async def ask(target, redis, limits, times=1) -> list[CallResult]:
    results = []
    async with httpx.AsyncClient() as client:
        for _ in range(times):
            result = CallResult()

            async def ignore(_text):
                pass

            await call(
                [target],
                REQUEST,
                result,
                client=client,
                cooldowns=Cooldowns(redis),  # COOLDOWN_AFTER failures: 3
                on_text=ignore,
                limits=limits,
                retry=RETRY,
            )
            results.append(result)
    return results


async def test_a_users_tight_timeouts_never_cool_a_site_wide_model_down(server, redis):
    # Slower than the user's 0.2 s, far faster than the site's 120 s.
    server.default = Reply.stream(["fine"], first_delay=0.5)
    failed = await ask(target(server), redis, TIGHT, times=4)
    assert all(r.error.kind == ErrorKind.TIMEOUT for r in failed)
    assert len(server.requests) == 12  # every attempt reached the upstream and timed out
    assert await cooldown_keys(redis) == []  # no failure was even counted

    (normal,) = await ask(target(server), redis, CallLimits.from_settings())
    assert normal.ok and normal.text == "fine"


async def test_on_a_users_own_provider_their_tight_timeouts_still_count(server, redis):
    server.default = Reply.stream(["fine"], first_delay=0.5)
    first, second = await ask(target(server, site_wide=False), redis, TIGHT, times=2)
    assert first.error.kind == ErrorKind.TIMEOUT  # three attempts: the third cooled it down
    assert await Cooldowns(redis).remaining(1, "m") > 0
    assert second.error.kind == ErrorKind.COOLDOWN
    assert len(server.requests) == 3  # the cooled-down model was not called again


async def test_a_5xx_storm_still_cools_a_site_wide_model_down(server, redis):
    server.default = Reply.json(503, {"error": {"message": "overloaded"}})
    stormed, skipped = await ask(target(server), redis, TIGHT, times=2)
    assert stormed.error.kind == ErrorKind.SERVER
    assert "fr:cooldown:1:m:until" in await cooldown_keys(redis)
    assert skipped.error.kind == ErrorKind.COOLDOWN and len(server.requests) == 3


async def test_a_timeout_under_the_sites_own_limits_counts(server, redis, settings):
    settings.CALL_FIRST_TOKEN_TIMEOUT_S = 0.2  # the site's default, not the user's choice
    server.default = Reply.stream(["late"], first_delay=0.5)
    (result,) = await ask(target(server), redis, CallLimits.from_settings())
    assert result.error.kind == ErrorKind.TIMEOUT and "first token" in result.error.message
    assert await Cooldowns(redis).remaining(1, "m") > 0


async def test_a_queueing_local_server_is_busy_not_failing(server, redis, settings):
    # A bundled model's server with its slots taken: calls wait past the site's first-token
    # limit. Three such waits cool an ordinary upstream down (above); a queueing one, never.
    settings.CALL_FIRST_TOKEN_TIMEOUT_S = 0.2
    server.default = Reply.stream(["late"], first_delay=0.5)
    results = await ask(target(server, queues=True), redis, CallLimits.from_settings(), times=2)
    assert all(r.error.kind == ErrorKind.TIMEOUT for r in results)
    assert await cooldown_keys(redis) == []
    # What a queue cannot explain still counts: a server answering 5xx is unwell.
    server.default = Reply.json(503, {"error": {"message": "overloaded"}})
    (stormed,) = await ask(target(server, queues=True), redis, CallLimits.from_settings())
    assert await Cooldowns(redis).remaining(1, "m") > 0


async def test_a_long_answer_cut_at_the_total_limit_does_not_count(server, redis, settings):
    settings.CALL_TOTAL_TIMEOUT_S = 0.5
    server.default = Reply.stream(["word "] * 40, delay=0.05)  # alive, but 2 s long
    results = await ask(target(server), redis, CallLimits.from_settings(), times=4)
    assert all("did not finish within" in r.error.message and r.text for r in results)
    assert await cooldown_keys(redis) == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json(400, {"error": {"message": "bad", "code": "context_length_exceeded"}}),
        Reply.json(400, {"error": {"message": "unsupported parameter"}}),
    ],
    ids=["context-length", "bad-request"],
)
async def test_failures_the_caller_caused_do_not_count(server, redis, reply):
    server.default = reply
    results = await ask(target(server), redis, CallLimits.from_settings(), times=4)
    assert all(r.error.kind in (ErrorKind.CONTEXT_LENGTH, ErrorKind.BAD_REQUEST) for r in results)
    assert await cooldown_keys(redis) == []


# --- through a whole run: the seat's limits and the provider come from the panel ---


@pytest.fixture
def kit():
    kit = ScriptedPanel(seats=1)
    yield kit
    kit.close()


@pytest.fixture
def clean_redis():
    client = redis_sync.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def seat_answer(run_id: int) -> Answer:
    return Answer.objects.get(run_id=run_id, role=Answer.Role.SEAT)


@pytest.mark.django_db(transaction=True)
def test_a_panel_with_tight_seat_limits_leaves_the_shared_model_alone(kit, clean_redis):
    # A row saved before the bounds existed (the builder now refuses 0.3 s): whatever
    # a seat's limits are, they are its own.
    seat = Seat.objects.get(panel=kit.panel)
    Seat.objects.filter(pk=seat.pk).update(first_token_timeout_s=0.3)
    upstream = kit.seats[0]
    upstream.default = Reply.stream(["Canberra."], first_delay=0.8)
    for _ in range(2):
        run_id = kit.ask()
        asyncio.run(run_and_listen(kit, run_id))
        assert seat_answer(run_id).error_kind == ErrorKind.TIMEOUT
    assert len(upstream.requests) == 6  # three attempts a run, all timed out
    assert clean_redis.keys("fr:cooldown:*") == []

    Seat.objects.filter(pk=seat.pk).update(first_token_timeout_s=None)  # the site's limits
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    assert seat_answer(run_id).text == "Canberra."


@pytest.mark.django_db(transaction=True)
def test_a_5xx_storm_on_a_panels_seat_cools_the_model_down(kit, clean_redis):
    upstream = kit.seats[0]
    upstream.default = Reply.json(502, {"error": {"message": "bad gateway"}})
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    assert seat_answer(run_id).error_kind == ErrorKind.SERVER
    model = Seat.objects.get(panel=kit.panel).model
    assert clean_redis.pttl(f"fr:cooldown:{model.provider_id}:{model.model_id}:until") > 0

    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    assert seat_answer(run_id).error_kind == ErrorKind.COOLDOWN
    assert len(upstream.requests) == 3  # the second run skipped it without a request


@pytest.mark.django_db
def test_a_run_knows_whose_provider_it_calls(alice, smollm2):
    from chat.engine.targets import target_for
    from panels.models import CatalogModel, Provider

    own = Provider.objects.create(owner=alice, name="Mine", base_url="https://api.example.org/v1")
    mine = CatalogModel.objects.create(provider=own, model_id="m", display_name="M")
    assert target_for(smollm2).site_wide and not target_for(mine).site_wide

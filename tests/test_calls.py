"""The call layer against a scripted upstream on a real socket: retries, Retry-After,
fallbacks, cooldowns, time limits, cancellation and many concurrent streams."""

import asyncio
import time
from decimal import Decimal

import httpx
import pytest
from django.conf import settings

from panels.calls import CallLimits, CallResult, RetryPolicy, Target, call
from panels.cooldown import Cooldowns
from panels.providers import ChatMessage, ChatRequest, Endpoint, ErrorKind
from tests.conftest import until
from tests.scripted_server import Reply, ScriptedServer

pytestmark = pytest.mark.usefixtures("redis_ready")

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),), max_tokens=16)
FAST_RETRY = RetryPolicy(max_retries=2, base_delay_s=0.01, max_delay_s=0.05)
LIMITS = CallLimits(connect_s=2, first_token_s=5, idle_s=5, total_s=20)
PRICES = (Decimal("0.000001"), Decimal("0.000002"))  # $1 / $2 per million tokens


def target(server, provider_id=1, model_id="m", name="Primary", prices=PRICES) -> Target:
    endpoint = Endpoint(kind="openai", base_url=server.base_url, name=name)
    return Target(provider_id, model_id, name, endpoint, prices)


async def run(targets, redis, limits=LIMITS, retry=FAST_RETRY, cooldowns=None):
    received: list[str] = []

    async def on_text(text):
        received.append(text)

    result = CallResult()
    async with httpx.AsyncClient() as client:
        await call(
            targets,
            REQUEST,
            result,
            client=client,
            on_text=on_text,
            limits=limits,
            retry=retry,
            cooldowns=cooldowns or Cooldowns(redis, threshold=10),
        )
    return result, received


async def test_retry_then_success(server, redis):
    server.enqueue(Reply.json(503, {"error": {"message": "busy"}}), Reply.stream(["ok"]))
    result, received = await run([target(server)], redis)
    assert result.ok and received == ["ok"]
    assert [a.outcome for a in result.attempts] == ["failed", "answered"]
    assert result.attempts[0].error["status"] == 503
    assert len(server.requests) == 2


async def test_retry_after_is_honoured(server, redis):
    server.enqueue(Reply.json(429, {"error": "slow"}, {"retry-after-ms": "400"}))
    server.enqueue(Reply.stream(["ok"]))
    result, _ = await run([target(server)], redis)
    assert result.ok
    gap = server.request_times[1] - server.request_times[0]
    assert gap >= 0.4  # waited as told, not the 10 ms backoff
    assert result.attempts[1].waited_s == pytest.approx(0.4)


async def test_retries_are_capped(server, redis):
    server.default = Reply.json(500, {"error": "down"})
    result, _ = await run([target(server)], redis)
    assert not result.ok and result.error.kind == ErrorKind.SERVER
    assert len(server.requests) == 1 + FAST_RETRY.max_retries


async def test_no_retry_after_the_first_token(server, redis):
    server.enqueue(Reply.stream(["Hello", " wor", "ld"], drop_after=2), Reply.stream(["never"]))
    result, received = await run([target(server)], redis)
    assert received == ["Hello", " wor"]
    assert result.text == "Hello wor"  # partial text kept
    assert result.error.kind == ErrorKind.STREAM
    assert len(server.requests) == 1
    assert result.usage.estimated and result.usage.output_tokens == 2
    assert result.cost.usd is not None  # priced from the estimate


async def test_client_errors_are_not_retried(server, redis):
    server.enqueue(Reply.json(401, {"error": {"message": "invalid key"}}))
    result, _ = await run([target(server, name="OpenRouter")], redis)
    assert result.error.kind == ErrorKind.AUTH
    assert result.error.message.startswith("OpenRouter refused the key: 401")
    assert len(server.requests) == 1


async def test_fallback_is_used_and_recorded(server, redis):
    with ScriptedServer() as backup:
        server.default = Reply.json(404, {"error": {"message": "no such model"}})
        backup.enqueue(
            Reply.stream(["from backup"], usage={"prompt_tokens": 3, "completion_tokens": 2})
        )
        primary, fallback = target(server), target(backup, 2, "b", "Backup")
        result, received = await run([primary, fallback], redis)
    assert result.ok and received == ["from backup"]
    assert result.answered_by.display_name == "Backup"
    assert [(a.model, a.outcome) for a in result.attempts] == [
        ("Primary", "failed"),
        ("Backup", "answered"),
    ]
    assert result.attempts[0].error["kind"] == "model_not_found"
    assert result.cost.usd == Decimal("0.000007") and result.cost.source == "catalog"


async def test_cooldown_skips_then_recovers(server, redis):
    cooldowns = Cooldowns(redis, threshold=2, steps=(1,))
    server.enqueue(Reply.json(502, {}), Reply.json(502, {}))
    no_retry = RetryPolicy(max_retries=0)
    for _ in range(2):
        result, _ = await run([target(server)], redis, retry=no_retry, cooldowns=cooldowns)
        assert result.error.kind == ErrorKind.SERVER
    assert await cooldowns.remaining(1, "m") > 0

    skipped, _ = await run([target(server)], redis, retry=no_retry, cooldowns=cooldowns)
    assert skipped.error.kind == ErrorKind.COOLDOWN
    assert skipped.attempts[0].outcome == "skipped"
    assert len(server.requests) == 2  # the skip made no request

    async def cooled_down() -> bool:
        return await cooldowns.remaining(1, "m") == 0

    await until(cooled_down, 5, "the 1 s cooldown to end")
    server.enqueue(Reply.stream(["back"]))
    recovered, _ = await run([target(server)], redis, retry=no_retry, cooldowns=cooldowns)
    assert recovered.ok and recovered.text == "back"


async def test_a_stall_ends_at_the_idle_limit(server, redis):
    server.enqueue(Reply.stream(["one"], done=False, finish=None, hang=True))
    limits = CallLimits(connect_s=2, first_token_s=5, idle_s=0.3, total_s=20)
    started = time.monotonic()
    result, received = await run([target(server)], redis, limits=limits)
    assert received == ["one"]
    assert result.error.kind == ErrorKind.TIMEOUT and "stalled" in result.error.message
    assert time.monotonic() - started < 5  # ended by the idle limit, not anything longer


async def test_first_token_limit(server, redis):
    server.default = Reply.stream(["late"], first_delay=2)
    limits = CallLimits(connect_s=2, first_token_s=0.3, idle_s=5, total_s=20)
    result, _ = await run([target(server)], redis, limits=limits, retry=RetryPolicy(0))
    assert result.error.kind == ErrorKind.TIMEOUT and "first token" in result.error.message


async def test_cancel_closes_the_upstream_socket_and_keeps_partial_text(server, redis):
    server.enqueue(Reply.stream(["partial ", "text"], done=False, finish=None, hang=True))
    received: list[str] = []
    result = CallResult()

    async def on_text(text):
        received.append(text)

    async with httpx.AsyncClient() as client:
        task = asyncio.create_task(
            call(
                [target(server)],
                REQUEST,
                result,
                client=client,
                cooldowns=Cooldowns(redis),
                on_text=on_text,
                limits=LIMITS,
                retry=FAST_RETRY,
            )
        )
        await until(lambda: len(received) >= 2, 10, "two pieces of text")
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: 0 in server.disconnects, 5, "the upstream to see the hang-up")
    assert server.disconnects[0] - cancelled_at < 1.0
    assert result.text == "partial text"
    assert result.attempts[0].outcome == "cancelled" and result.error.kind == ErrorKind.CANCELLED
    assert result.usage.output_tokens == 2 and result.cost.usd is not None


async def test_unknown_price_is_unknown_not_zero(server, redis):
    server.enqueue(Reply.stream(["x"], usage={"prompt_tokens": 5, "completion_tokens": 1}))
    result, _ = await run([target(server, prices=None)], redis)
    assert result.cost.usd is None and result.cost.display() == "unknown"


async def test_provider_reported_cost_wins(server, redis):
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "cost": 0.0042}
    server.enqueue(Reply.stream(["x"], usage=usage))
    result, _ = await run([target(server)], redis)
    assert result.cost.usd == Decimal("0.0042") and result.cost.source == "provider"


async def test_200_concurrent_streams_on_one_loop_leak_no_connections(server, redis):
    server.default = Reply.stream([f"t{i}" for i in range(5)], delay=0.01)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits) as client:
        results = [CallResult() for _ in range(200)]

        async def one(result):
            async def on_text(_):
                pass

            await call(
                [target(server)],
                REQUEST,
                result,
                client=client,
                on_text=on_text,
                cooldowns=Cooldowns(redis),
                limits=LIMITS,
                retry=FAST_RETRY,
            )

        await asyncio.gather(*(one(r) for r in results))
        assert all(r.ok and r.text == "t0t1t2t3t4" for r in results)
        # only the keep-alive pool stays open
        await until(lambda: server.open_connections <= 20, 2, "at most 20 open connections")
        assert server.open_connections <= 20
    await until(lambda: server.open_connections == 0, 2, "every connection to close")
    assert server.open_connections == 0  # closing the client closed every socket
    assert not settings.REDIS_URL.endswith("/0")  # a test database, never development's


@pytest.mark.parametrize(
    "reply, kind, words",
    [
        (
            Reply(status=200, headers={"Content-Type": "text/html"}, body=b"<html>login</html>"),
            ErrorKind.STREAM,
            "did not answer with a stream",
        ),
        (
            Reply(
                status=502,
                headers={"Content-Type": "text/html"},
                body=b"<!DOCTYPE html><html>Bad Gateway</html>",
            ),
            ErrorKind.SERVER,
            "an HTML page instead of an API answer",
        ),
        (
            Reply(status=400, body=b"plain words, not JSON"),
            ErrorKind.BAD_REQUEST,
            "plain words, not JSON",
        ),
        (
            Reply.json(
                400,
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens",
                        "code": "context_length_exceeded",
                    }
                },
            ),
            ErrorKind.CONTEXT_LENGTH,
            "context too long",
        ),
        (
            Reply(status=302, headers={"Location": "http://10.0.0.1/"}),
            ErrorKind.BAD_REQUEST,
            "redirects are not followed",
        ),
    ],
)
async def test_bad_upstream_answers_end_in_typed_errors(server, redis, reply, kind, words):
    server.default = reply
    result, _ = await run([target(server)], redis, retry=RetryPolicy(0))
    assert result.error.kind == kind
    assert words in result.error.message


async def test_provider_down_is_a_connection_error(redis):
    endpoint = Endpoint(kind="openai", base_url="http://127.0.0.1:9/v1", name="Down")
    result, _ = await run([Target(1, "m", "Down", endpoint, None)], redis, retry=RetryPolicy(0))
    assert result.error.kind == ErrorKind.CONNECTION
    assert result.error.message.startswith("could not reach Down")

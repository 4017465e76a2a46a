"""An answer holds at most ANSWER_MAX_CHARS characters and ANSWER_MAX_BYTES bytes:
an upstream that streams without end is cut off there, keeps what fits, and costs
this process, Redis and the browsers no more than that. Tool calls are capped too.
Real sockets to a scripted upstream throughout."""

import asyncio
import itertools
import time

import httpx
import pytest
import redis as redis_sync
from django.conf import settings

from chat.engine import live
from chat.models import Answer, Run
from panels.calls import AnswerCap, CallLimits, CallResult, RetryPolicy, Target, call
from panels.cooldown import Cooldowns
from panels.providers import (
    AnthropicProvider,
    ChatMessage,
    ChatRequest,
    Endpoint,
    ErrorKind,
    OpenAICompatibleProvider,
    ProviderError,
)
from tests.conftest import until
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.rss import PeakRSS
from tests.scripted_server import Reply, ScriptedServer

pytestmark = pytest.mark.usefixtures("redis_ready")

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),), max_tokens=16)
LIMITS = CallLimits(connect_s=2, first_token_s=5, idle_s=5, total_s=30)
MB = 1024 * 1024


def prose(size: int = 1000, words: str = "says little"):
    """Text that never ends and never repeats itself (the loop detector would cut a
    repeating flood first): numbered sentences, about `size` characters a delta."""
    numbers = itertools.count()
    while True:
        delta = ""
        while len(delta) < size:
            delta += f"Sentence {next(numbers)} {words}. "
        yield delta


def pieces(count: int, size: int = 100) -> list[str]:
    """`count` different texts of exactly `size` characters."""
    return [(f"piece {i} " * size)[:size] for i in range(count)]


async def run(server, redis, cap: AnswerCap | None = None):
    received: list[str] = []

    async def on_text(text):
        received.append(text)

    endpoint = Endpoint(kind="openai", base_url=server.base_url, name="Flood")
    result = CallResult()
    async with httpx.AsyncClient() as client:
        await call(
            [Target(1, "m", "Flood", endpoint, None)],
            REQUEST,
            result,
            client=client,
            cooldowns=Cooldowns(redis, threshold=10),
            on_text=on_text,
            limits=LIMITS,
            retry=RetryPolicy(max_retries=2, base_delay_s=0.01),
            cap=cap,
        )
    return result, received


async def hung_up(server, index=0) -> bool:
    await until(lambda: index in server.disconnects, 2, f"upstream connection {index} to close")
    return True


async def test_an_endless_answer_ends_at_the_cap_and_memory_stays_bounded(server, redis):
    # 64 MB of text that then ends properly: without the cap the call would succeed
    # and hold all of it.
    offered = 64 * MB
    server.enqueue(Reply.flood(prose(), total_bytes=offered))
    started = time.monotonic()
    with PeakRSS() as memory:
        result, received = await run(server, redis)
    assert result.error is not None and result.error.kind == ErrorKind.TOO_LARGE
    assert not result.error.retryable and len(server.requests) == 1
    assert "passed the cap of 200,000 characters" in result.error.message
    assert "cut off" in result.error.message
    assert result.text == "".join(received)  # what the conversation was sent: no more
    assert len(result.text) == settings.ANSWER_MAX_CHARS  # what fits is kept, to the letter
    assert time.monotonic() - started < 10
    assert await hung_up(server)  # the upstream connection was closed at once
    assert server.sent_bytes[0] < offered / 4  # only what the socket buffers held
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"


async def test_the_byte_cap_keeps_whole_characters(server, redis):
    server.enqueue(Reply.flood(prose(100, "é€😀")))  # 2, 3 and 4 bytes: forever
    result, received = await run(server, redis, cap=AnswerCap(chars=100_000, bytes=4001))
    assert result.error is not None and result.error.kind == ErrorKind.TOO_LARGE
    size = len(result.text.encode())  # encodes: no half character was kept
    assert 4001 - 4 < size <= 4001
    assert "".join(received) == result.text
    assert await hung_up(server)


@pytest.mark.parametrize(("count", "fails"), [(10, False), (11, True)])
async def test_an_answer_exactly_at_the_cap_is_whole(server, redis, count, fails):
    server.enqueue(Reply.stream(pieces(count)))
    result, _ = await run(server, redis, cap=AnswerCap(chars=1000, bytes=10_000))
    assert result.ok is not fails
    assert len(result.text) == 1000
    if fails:
        assert result.error is not None and result.error.kind == ErrorKind.TOO_LARGE


async def test_tool_arguments_are_capped_with_the_answer(server, redis, settings):
    settings.ANSWER_MAX_CHARS = 1000
    arguments = '{"code": "' + "x" * 1500 + '"}'
    server.enqueue(Reply.tool_calls([("c1", "run_python", arguments)]))
    result, _ = await run(server, redis)
    assert result.error is not None and result.error.kind == ErrorKind.TOO_LARGE
    assert "arguments for run_python longer than 1,000 characters" in result.error.message
    assert not result.tool_calls


async def stream_all(server, kind: str) -> None:
    endpoint = Endpoint(kind=kind, base_url=server.base_url, name="Tools")
    async with httpx.AsyncClient(timeout=5) as client:
        provider_class = OpenAICompatibleProvider if kind == "openai" else AnthropicProvider
        # REQUEST carries the default StreamLimits: 32 calls of 200,000 characters.
        async for _ in provider_class(endpoint, client).stream(REQUEST):
            pass


async def test_too_many_tool_calls_end_the_answer(server):
    server.enqueue(Reply.tool_calls([(f"c{i}", "web_search", "{}") for i in range(33)]))
    with pytest.raises(ProviderError, match="more than 32 tool calls") as caught:
        await stream_all(server, "openai")
    assert caught.value.kind == ErrorKind.TOO_LARGE


async def test_anthropic_tool_calls_are_capped_in_number_and_length(server):
    many = [(f"t{i}", "web_search", ["{}"]) for i in range(33)]
    server.enqueue(Reply.anthropic_stream(["ok"], tool_uses=many))
    with pytest.raises(ProviderError, match="more than 32 tool calls") as caught:
        await stream_all(server, "anthropic")
    assert caught.value.kind == ErrorKind.TOO_LARGE

    long = [("t1", "run_python", ['{"code": "' + "x" * 150_000, "x" * 60_000 + '"}'])]
    server.enqueue(Reply.anthropic_stream(["ok"], tool_uses=long))
    with pytest.raises(ProviderError, match="longer than 200,000 characters") as caught:
        await stream_all(server, "anthropic")
    assert caught.value.kind == ErrorKind.TOO_LARGE


@pytest.mark.django_db(transaction=True)
def test_a_flooding_seat_is_cut_and_the_run_goes_on(settings):
    settings.CALL_MAX_RETRIES = 0
    settings.ANSWER_MAX_CHARS = 5000
    kit = ScriptedPanel()
    try:
        kit.seats[0].enqueue(Reply.stream(["Canberra."]))
        kit.seats[1].enqueue(Reply.flood(prose(200, "Sydney?")))  # never ends
        kit.seats[2].enqueue(Reply.stream(["Canberra, since 1913."]))
        kit.judge.enqueue(analysis_reply())
        kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
        run_id = kit.ask()
        events = asyncio.run(run_and_listen(kit, run_id))
    finally:
        kit.close()
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.DONE
    flooded = run.seat_answers[1]
    assert flooded.status == Answer.Status.FAILED and flooded.error_kind == "too_large"
    assert "passed the cap of 5,000 characters" in flooded.error
    assert flooded.text == "".join(itertools.islice(prose(200, "Sydney?"), 100))[:5000]
    assert flooded.html.startswith("<p>Sentence 0 Sydney?. Sentence 1")  # rendered when saved
    deltas = [e for e in events if e["type"] == "answer.delta" and e["answer"] == flooded.pk]
    assert "".join(d["text"] for d in deltas) == flooded.text  # the browsers got no more
    client = redis_sync.Redis.from_url(settings.REDIS_URL)
    try:
        assert client.strlen(live.text_key(flooded.pk)) == 5000  # nor did Redis
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_the_cap_is_the_answers_across_tool_rounds(settings):
    """Text before a tool call counts: the round after it has only what is left."""
    settings.CALL_MAX_RETRIES = 0
    settings.ANSWER_MAX_CHARS = 5000
    first = "".join(pieces(30))  # 3,000 characters, then a search
    with ScriptedServer() as searx:
        settings.SEARCH_BACKEND = "searxng"
        settings.SEARXNG_URL = searx.base_url.removesuffix("/v1")
        searx.enqueue(Reply.json(200, {"results": [{"title": "T", "url": "https://x.org/"}]}))
        kit = ScriptedPanel(seats=1, tools=["web_search"])
        try:
            search = ("c1", "web_search", '{"query": "capital"}')
            kit.seats[0].enqueue(Reply.tool_calls([search], text=first), Reply.flood(prose()))
            kit.judge.enqueue(analysis_reply())
            kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
            run_id = kit.ask()
            asyncio.run(run_and_listen(kit, run_id))
        finally:
            kit.close()
    answer = Run.objects.get(pk=run_id).seat_answers[0]
    assert answer.error_kind == "too_large" and len(answer.tool_steps) == 1
    assert len(answer.text) == 5000
    assert answer.text.startswith(first + "\n\nSentence 0 says little.")

"""Nothing an upstream sends is read without a bound: a stream event stops at
StreamLimits.event_bytes, an error body at 8 kB. Real sockets to a scripted upstream;
memory is measured as the peak resident size while the upstream floods."""

import itertools
import json
import time

import httpx
import pytest

from panels.providers import (
    ChatMessage,
    ChatRequest,
    Endpoint,
    ErrorKind,
    OpenAICompatibleProvider,
    ProviderError,
    StreamLimits,
    TextDelta,
)
from tests.rss import PeakRSS
from tests.scripted_server import Reply, ScriptedServer

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),), max_tokens=16)
SSE = {"Content-Type": "text/event-stream"}
MB = 1024 * 1024
FLOOD = 64 * MB
BLOCK = b"a" * 65536


async def stream(server: ScriptedServer) -> list:
    endpoint = Endpoint(kind="openai", base_url=server.base_url, name="Flood")
    async with httpx.AsyncClient() as client:
        provider = OpenAICompatibleProvider(endpoint, client)
        return [event async for event in provider.stream(REQUEST)]


async def flooded(server: ScriptedServer) -> tuple[ProviderError, PeakRSS, float]:
    started = time.monotonic()
    with PeakRSS() as memory, pytest.raises(ProviderError) as caught:
        await stream(server)
    return caught.value, memory, time.monotonic() - started


def data(delta: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": delta}}]}).encode()


async def test_a_line_without_end_is_a_stream_error_and_memory_stays_bounded(server):
    # 64 MB in one `data:` line that never ends: httpx-sse alone would hold all of it.
    server.enqueue(
        Reply(headers=SSE, chunks=itertools.chain([b"data: "], itertools.repeat(BLOCK, 1024)))
    )
    error, memory, took = await flooded(server)
    assert error.kind == ErrorKind.STREAM and not error.retryable
    assert f"longer than {StreamLimits.event_bytes:,} bytes" in error.message
    assert took < 10
    assert server.sent_bytes[0] < FLOOD / 4  # the connection was closed, not drained
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"


async def test_an_event_of_lines_without_end_is_cut_off_too(server):
    # Short lines, but no blank line ever ends the event: the data piles up just the same.
    line = b"data: " + BLOCK[:1000] + b"\n"
    server.enqueue(Reply(headers=SSE, chunks=itertools.repeat(line, FLOOD // len(line))))
    error, memory, _ = await flooded(server)
    assert error.kind == ErrorKind.STREAM
    assert "stream event longer than" in error.message
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"


async def test_a_huge_error_body_is_not_read_whole(server):
    body = itertools.chain(
        [b'{"error": {"message": "'], itertools.repeat(BLOCK, FLOOD // len(BLOCK)), [b'"}}']
    )
    server.enqueue(Reply(status=500, headers={"Content-Type": "application/json"}, chunks=body))
    error, memory, took = await flooded(server)
    assert error.kind == ErrorKind.SERVER and error.status == 500
    assert error.message.startswith("Flood failed with HTTP 500")
    assert len(error.message) < 400
    assert took < 3
    assert server.sent_bytes[0] < FLOOD / 4
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"


async def test_lines_end_at_crlf_cr_or_lf_even_split_across_reads(server):
    three = b"data: " + data("three") + b"\n\n"
    chunks = [
        b"data: " + data("one") + b"\r",  # CRLF cut between two reads
        b"\n\r\n",
        b": a comment\rdata: " + data("two") + b"\r\r",  # CR alone
        three[:20],  # a line in two reads
        three[20:],
        b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    server.enqueue(Reply(headers=SSE, chunks=chunks, delay=0.01))
    events = await stream(server)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", "two", "three"]
    # Inflating a compressed body would defeat the bounds: none is asked for.
    assert server.requests[0]["headers"]["Accept-Encoding"] == "identity"


def gzip_bomb(size: int) -> bytes:
    """`size` bytes of one repeated SSE comment line, gzipped: about a thousandth."""
    import gzip

    return gzip.compress(b": x\n" * (size // 4), compresslevel=9)


async def test_a_compressed_stream_is_refused_not_inflated(server):
    # 100 MB of stream comments in about 100 KB: httpx would inflate each network
    # read whole before any cap saw it. We ask for no compression and refuse it.
    bomb = gzip_bomb(100 * MB)
    assert len(bomb) < 300_000
    server.enqueue(Reply(headers={**SSE, "Content-Encoding": "gzip"}, chunks=[bomb]))
    error, memory, took = await flooded(server)
    assert error.kind == ErrorKind.STREAM and "gzip-compressed" in error.message
    assert server.requests[0]["headers"]["Accept-Encoding"] == "identity"
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    server.enqueue(Reply(status=500, headers=headers, chunks=[bomb]))
    error, memory, took = await flooded(server)
    assert error.status == 500 and "gzip-compressed body, not read" in error.message
    assert memory.growth < 24 * MB, f"RSS grew by {memory.growth / MB:.0f} MB"

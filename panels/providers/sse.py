"""Reading a server-sent event stream without letting the upstream decide how much
this process holds.

httpx-sse buffers a line until its newline arrives and an event until its blank line
arrives, with no limit: an upstream that sends neither grows one string for as long
as it streams. Here lines are split over the response's bytes with a cap on each
event (all its lines), and httpx-sse's decoder still interprets the fields.
"""

import re
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
from httpx_sse import ServerSentEvent

# The package's public API has no way to feed it lines; the decoder is the part of
# it that follows the spec. pyproject pins httpx-sse below 0.5.
from httpx_sse._decoders import SSEDecoder

from .base import ErrorKind, ProviderError

_NEWLINE = re.compile(rb"\r\n|\r|\n")


class EventStream:
    """The events of one SSE response, each at most `max_event_bytes` long."""

    def __init__(self, response: httpx.Response, name: str, max_event_bytes: int):
        self.response = response
        self.name = name
        self.max_event_bytes = max_event_bytes

    def _too_long(self) -> ProviderError:
        # Not retryable: the same server would send the same flood again.
        return ProviderError(
            f"{self.name} sent a stream event longer than {self.max_event_bytes:,} bytes; "
            "the stream was cut off there. Is the base URL a chat completions API?",
            retryable=False,
            kind=ErrorKind.STREAM,
        )

    async def _lines(self) -> AsyncGenerator[str, None]:
        """Lines ended by CRLF, CR or LF (the SSE rule), never longer than the cap.
        Bytes are split before decoding: CR and LF are never part of a longer UTF-8
        character, and SSE is UTF-8 by definition."""
        pending = bytearray()
        after_cr = False  # the last chunk ended in CR: an LF opening this one is its pair
        async for chunk in self.response.aiter_bytes():
            if after_cr and chunk[:1] == b"\n":
                chunk = chunk[1:]
            after_cr = chunk[-1:] == b"\r"
            start = 0
            for newline in _NEWLINE.finditer(chunk):
                if len(pending) + newline.start() - start > self.max_event_bytes:
                    raise self._too_long()
                pending += chunk[start : newline.start()]
                yield pending.decode("utf-8", "replace")
                pending.clear()
                start = newline.end()
            if len(pending) + len(chunk) - start > self.max_event_bytes:
                raise self._too_long()
            pending += chunk[start:]
        # A last line without its newline cannot end an event: like httpx-sse, drop it.

    async def aiter_sse(self) -> AsyncIterator[ServerSentEvent]:
        decoder = SSEDecoder()
        size = 0  # bytes held for the event being read (comment lines hold nothing)
        lines = self._lines()
        try:
            async for line in lines:
                if not line:
                    size = 0
                elif not line.startswith(":"):
                    size += len(line) + 1
                    if size > self.max_event_bytes:
                        raise self._too_long()
                if (event := decoder.decode(line)) is not None:
                    yield event
        finally:
            await lines.aclose()

"""Coalesce a token stream into ~50 ms flushes without ever delaying the first one.

A model emits one token per chunk; forwarding each as its own websocket frame
costs a Redis round-trip apiece. The coalescer forwards the first text at once,
then at most one flush per interval with everything that arrived meanwhile.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Coalescer:
    def __init__(self, flush: Callable[[str], Awaitable[None]], interval: float = 0.05):
        self._flush = flush
        self._interval = interval
        self._buffer: list[str] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def push(self, text: str) -> None:
        self._buffer.append(text)
        self._wake.set()

    async def close(self) -> None:
        """Flush what is buffered and stop."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._buffer:
                text = "".join(self._buffer)
                self._buffer.clear()
                await self._flush(text)
            if self._closing.is_set() and not self._buffer:
                return
            # Let text gather for one interval; closing cuts the wait short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._interval)

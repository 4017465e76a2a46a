"""An event that cannot be delivered never holds a run: channels_redis' group_send
can wait forever on a lost Redis reply (seen here: a finished run whose last event
never left kept its evaluation waiting), so announcing is bounded."""

import asyncio
import time

import pytest

from chat.engine import live


class StuckLayer:
    """A channel layer whose group_send never returns, like the hang seen."""

    def __init__(self):
        self.calls = 0

    async def group_send(self, group, message):
        self.calls += 1
        await asyncio.Event().wait()


async def test_an_announce_that_hangs_gives_up_after_its_timeout(monkeypatch):
    monkeypatch.setattr(live, "ANNOUNCE_TIMEOUT_S", 0.2)
    layer = StuckLayer()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await live.announce(layer, "room-1", {"type": "run.done"})
    assert layer.calls == 1 and time.monotonic() - started < 2

"""A run's events, sent to its room by tasks of their own, in the order that matters.

Announcing costs Redis round trips (channels_redis' group_send: two or three per
event). When every stage awaited them, a run waited on Redis at each step of its
critical path — the start, every answer's start and end, every stage change —
and under load each wait grew with the event loop's queue (docs/PROFILE.md). The
outbox takes them off that path: a stage hands its event over and goes on.

The order a browser relies on is kept, and no more is imposed: an answer's events
(created, started, deltas, tools, ended) leave in the order they were handed over,
one lane per answer, so the seats of a run stream side by side as before; a run's
own events (started, a stage change, a decision, the analysis, done) leave after
every event handed over before them, and before every event handed over after.
Deltas are sent by their stream's own task (`send_now`), in their lane's order.
An event is handed over only after the state it announces was saved (the database
row, the live text in Redis), so it is delayed, never ahead of that state. A run
closes its outbox before it ends: its last event is out before its task finishes.
"""

import asyncio
import logging
from collections.abc import Mapping

from . import live

log = logging.getLogger(__name__)

# Events waiting when Redis stalls: a run streaming at full speed hands over about
# 20 deltas a second per answer. Past this, new events are dropped (and counted);
# the room recovers them from its snapshot, as it does an event lost in Redis.
OUTBOX_LIMIT = 5000


class Outbox:
    def __init__(self, channel_layer, group: str, run_id: int, limit: int = OUTBOX_LIMIT):
        self._layer = channel_layer
        self._group = group
        self._run_id = run_id
        self._limit = limit
        self._barrier: asyncio.Future | None = None  # the last run event's delivery
        self._lanes: dict[int, asyncio.Future] = {}  # each answer's last delivery since
        self._waiting: set[asyncio.Task] = set()
        self._closing = False
        self.dropped = 0

    def send(self, event: Mapping) -> None:
        """Hand an event over (see the module's docstring for the order kept)."""
        if self._closing:
            raise RuntimeError("This run's outbox is closed; nothing more can be sent.")
        if len(self._waiting) >= self._limit:
            if not self.dropped:
                log.warning(
                    "run %s: %d events wait for Redis; dropping new ones until it answers",
                    self._run_id,
                    self._limit,
                )
            self.dropped += 1
            return
        lane = event.get("answer")
        if lane is None:
            after = [t for t in (self._barrier, *self._lanes.values()) if t is not None]
            self._lanes.clear()
        else:
            before = self._lanes.get(lane) or self._barrier
            after = [before] if before is not None else []
        task = asyncio.create_task(self._deliver(after, event))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
        if lane is None:
            self._barrier = task
        else:
            self._lanes[lane] = task

    async def send_now(self, event: Mapping) -> None:
        """Deliver an answer's event here, after every event of its answer (and every
        run event) handed over before it. For deltas: their stream is a task of its
        own, so this holds no stage, and it adds no hop through the event loop to
        each one; while it waits, the coalescer gathers the next text, so under load
        deltas grow instead of queueing."""
        if self._closing:
            raise RuntimeError("This run's outbox is closed; nothing more can be sent.")
        lane = event["answer"]
        while (before := self._lanes.get(lane) or self._barrier) and not before.done():
            await asyncio.wait([before])
        sending: asyncio.Future = asyncio.get_running_loop().create_future()
        self._lanes[lane] = sending  # what is handed over next waits for this one
        try:
            await self._announce(event)
        finally:
            sending.set_result(None)

    async def close(self, timeout: float = live.ANNOUNCE_TIMEOUT_S) -> None:
        """Deliver what is waiting, for at most `timeout` seconds in all. What
        Redis did not take by then is dropped (logged): a run never waits longer
        for its events than one announce may take."""
        self._closing = True
        if not self._waiting:
            return
        pending = set(self._waiting)
        _, late = await asyncio.wait(pending, timeout=timeout)
        if late:
            for task in late:
                task.cancel()
            await asyncio.wait(late)
            log.warning(
                "run %s: %d events were not delivered before the run ended",
                self._run_id,
                len(late),
            )

    async def _deliver(self, after: list[asyncio.Future], event: Mapping) -> None:
        # Each wait costs a turn of the event loop, which under load is milliseconds.
        if pending := [f for f in after if not f.done()]:
            await asyncio.wait(pending)  # never raises: a failed delivery was logged
        await self._announce(event)

    async def _announce(self, event: Mapping) -> None:
        try:
            await live.announce(self._layer, self._group, event)
        except Exception as exc:  # a lost frame is recovered from the snapshot
            log.warning("could not announce %s for run %s: %r", event["type"], self._run_id, exc)

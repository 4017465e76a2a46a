"""A run's outbox: no stage waits for Redis to carry its events, and the room still
gets them in the order a browser relies on — each answer's in order, a run's own
events after everything handed over before them (chat/engine/outbox.py)."""

import asyncio
import logging

import pytest
from channels.layers import get_channel_layer

from chat.engine.outbox import Outbox

pytestmark = pytest.mark.usefixtures("redis_ready")


def delta(answer: int, seq: int) -> dict:
    return {"type": "answer.delta", "run": 7, "answer": answer, "seq": seq, "text": f"{seq} "}


async def test_events_reach_the_room_through_redis_in_the_order_a_browser_needs():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("room-outbox", channel)
    box = Outbox(layer, "room-outbox", run_id=7)
    box.send({"type": "run.started", "run": 7})
    for seq in range(1, 31):  # two seats streaming side by side
        box.send(delta(1, seq))
        box.send(delta(2, seq))
    box.send({"type": "run.status", "run": 7, "status": "judging"})
    box.send(delta(3, 1))
    box.send({"type": "run.done", "run": 7})
    await box.close()

    got = [(await layer.receive(channel))["event"] for _ in range(64)]
    await layer.group_discard("room-outbox", channel)
    kinds = [e["type"] for e in got]
    assert kinds[0] == "run.started" and kinds[-1] == "run.done"
    for answer in (1, 2):
        assert [e["seq"] for e in got if e.get("answer") == answer] == list(range(1, 31))
    # The stage change left after both seats' deltas, and before the judge's.
    status = kinds.index("run.status")
    assert status == 61 and got[62] == delta(3, 1)


class HeldLayer:
    """A channel layer that holds one answer's events until released, as a Redis
    that is slow for some frames would: records what it delivered."""

    def __init__(self, held_answer: int):
        self.held_answer = held_answer
        self.release = asyncio.Event()
        self.delivered: list[dict] = []

    async def group_send(self, group, message):
        event = message["event"]
        if event.get("answer") == self.held_answer:
            await self.release.wait()
        self.delivered.append(event)


async def test_a_slow_answer_holds_neither_the_stage_nor_the_other_seats():
    layer = HeldLayer(held_answer=1)
    box = Outbox(layer, "room-1", run_id=7)
    box.send(delta(1, 1))  # returns at once: the stage goes on
    box.send(delta(2, 1))
    box.send(delta(2, 2))
    box.send({"type": "run.status", "run": 7, "status": "judging"})
    for _ in range(20):
        await asyncio.sleep(0)
    # The other seat streamed past the held one; the stage change waits for both.
    assert layer.delivered == [delta(2, 1), delta(2, 2)]
    layer.release.set()
    await box.close()
    assert layer.delivered[2:] == [
        delta(1, 1),
        {"type": "run.status", "run": 7, "status": "judging"},
    ]


async def test_closing_gives_up_on_a_stuck_room_within_its_timeout(caplog):
    layer = HeldLayer(held_answer=1)
    box = Outbox(layer, "room-1", run_id=7)
    box.send(delta(1, 1))
    box.send({"type": "run.done", "run": 7})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="chat.engine.outbox"):
        await box.close(timeout=0.2)
    assert loop.time() - started < 2
    assert layer.delivered == []
    assert "2 events were not delivered before the run ended" in caplog.text
    with pytest.raises(RuntimeError, match="outbox is closed"):
        box.send({"type": "run.done", "run": 7})


async def test_events_past_the_limit_are_dropped_and_counted(caplog):
    layer = HeldLayer(held_answer=1)
    box = Outbox(layer, "room-1", run_id=7, limit=3)
    with caplog.at_level(logging.WARNING, logger="chat.engine.outbox"):
        for seq in range(1, 6):
            box.send(delta(1, seq))
    assert box.dropped == 2
    assert "3 events wait for Redis; dropping new ones" in caplog.text
    layer.release.set()
    await box.close()
    assert [e["seq"] for e in layer.delivered] == [1, 2, 3]


async def test_a_delta_goes_out_after_its_answers_earlier_events_and_waits_for_nothing_else():
    layer = HeldLayer(held_answer=1)
    box = Outbox(layer, "room-1", run_id=7)
    started = {"type": "answer.started", "run": 7, "answer": 1}
    box.send(started)
    await asyncio.wait_for(box.send_now(delta(2, 1)), 1)  # the other seat's lane is clear
    waiting = asyncio.create_task(box.send_now(delta(1, 1)))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # its answer's start has not left: the delta waits
    assert layer.delivered == [delta(2, 1)]
    layer.release.set()
    await asyncio.wait_for(waiting, 1)
    box.send({"type": "run.done", "run": 7})
    await box.close()
    assert layer.delivered == [delta(2, 1), started, delta(1, 1), {"type": "run.done", "run": 7}]

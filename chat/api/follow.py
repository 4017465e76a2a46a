"""Following a run for an API caller: the final answer's text as it streams, then
the finished run. Built on the same events as the chatroom, with the database as
the last word (a dropped frame never loses text)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from channels.layers import get_channel_layer

from chat.engine import live
from chat.engine.db import in_db
from chat.models import Answer, Run

POLL_S = 2.0  # when no event arrives, look at the database


async def final_text(run_id: int, group: str, subscribed) -> AsyncIterator[tuple[str, str]]:
    """Yields ("text", delta) for the final answer, ("progress", event) for the rest,
    and ends when the run is over. `subscribed` is set once listening."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    subscribed.set()
    redis = live.redis_client()
    final_id = await in_db(_solo_answer_id, run_id)
    sent = 0
    try:
        while True:
            try:
                async with asyncio.timeout(POLL_S):
                    event = (await layer.receive(channel))["event"]
            except TimeoutError:
                event = None
            if event is None or event.get("run") != run_id:
                if not await in_db(_is_active, run_id):
                    break
                continue
            kind = event["type"]
            if kind == "answer.created" and event.get("role") == "synthesizer":
                final_id = event["answer"]
            if kind == "answer.delta" and event["answer"] == final_id:
                text, _ = await live.live_state(redis, final_id)
                if len(text) > sent:  # covers dropped frames too
                    yield "text", text[sent:]
                    sent = len(text)
                continue
            yield "progress", event
            if kind == "run.done":
                break
        if final_id is not None:  # whatever the events missed, the database has
            saved = await in_db(lambda: Answer.objects.get(pk=final_id).text)
            if len(saved) > sent:
                yield "text", saved[sent:]
    finally:
        with contextlib.suppress(Exception):
            await layer.group_discard(group, channel)
        await redis.aclose()


def _solo_answer_id(run_id: int) -> int | None:
    run = Run.objects.get(pk=run_id)
    if run.config.get("judge"):
        return None
    seat = run.answers.filter(role=Answer.Role.SEAT).first()
    return seat.pk if seat else None


def _is_active(run_id: int) -> bool:
    return Run.objects.get(pk=run_id).is_active

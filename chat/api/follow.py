"""Following a run for an API caller: the final answer's text as it streams, then
the finished run. Read from the room's event stream, as the chatroom is, with the
database as the last word (text Redis lost is never lost)."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from chat.engine import live
from chat.engine.db import in_db
from chat.models import Answer, Run

POLL_S = 1.0  # when no event arrives, look at the database (and say "idle")


async def final_text(run_id: int, room: str, subscribed) -> AsyncIterator[tuple[str, Any]]:
    """Yields ("text", delta) for the final answer, ("progress", event) for the rest,
    ("idle", None) after a quiet POLL_S, and ends when the run is over. `room` is the
    room's event stream; `subscribed` is set once listening. The run is started
    before it is followed, so its events are read from the oldest the stream keeps
    (other runs' are skipped): none is missed."""
    redis = live.redis_client()
    try:
        cursor = "0-0"
        subscribed.set()
        final_id = await in_db(_solo_answer_id, run_id)
        sent, seq = 0, 0
        over = False
        while not over:
            read = await live.read_events(redis, {room: cursor}, int(POLL_S * 1000))
            entries = read.get(room, [])
            if not entries:
                if not await in_db(_is_active, run_id):
                    break
                yield "idle", None  # a quiet second: a stream may write a keep-alive
                continue
            for cursor, event in entries:  # noqa: B007 (the cursor is kept for the next read)
                if event.get("run") != run_id:
                    continue
                kind = event["type"]
                if kind == "answer.created" and event.get("role") == "synthesizer":
                    final_id = event["answer"]
                if kind == "answer.delta" and event["answer"] == final_id:
                    if event["seq"] == seq + 1:
                        text = event["text"]
                    else:  # a delta Redis lost: the live copy has it
                        live_copy, _ = await live.live_state(redis, final_id)
                        text = live_copy[sent:]
                    seq = event["seq"]
                    if text:
                        yield "text", text
                        sent += len(text)
                    continue
                yield "progress", event
                if kind == "run.done":
                    over = True
                    break
        if final_id is not None:  # whatever the events missed, the database has
            saved = await in_db(lambda: Answer.objects.get(pk=final_id).text)
            if len(saved) > sent:
                yield "text", saved[sent:]
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()


def _solo_answer_id(run_id: int) -> int | None:
    run = Run.objects.get(pk=run_id)
    if run.config.get("judge"):
        return None
    seat = run.answers.filter(role=Answer.Role.SEAT).first()
    return seat.pk if seat else None


def _is_active(run_id: int) -> bool:
    return Run.objects.get(pk=run_id).is_active

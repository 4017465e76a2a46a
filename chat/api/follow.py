"""Following a run for an API caller: the final answer's text as it streams, then
the finished run. Read from the conversation's event stream, as the chatroom is, with the
database as the last word (text Redis lost is never lost)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from chat.engine import live
from chat.engine.db import in_db
from chat.models import Answer, Run

POLL_S = 1.0  # when no event arrives, look at the database (and say "idle")


async def final_text(
    run_id: int, conversation: str, subscribed, tap: asyncio.Queue | None = None
) -> AsyncIterator[tuple[str, Any]]:
    """Yields ("text", delta) for the final answer, ("progress", event) for the rest,
    ("idle", None) after a quiet POLL_S, and ends when the run is over. `conversation` is the
    conversation's event stream; `subscribed` is set once listening. The run is started
    before it is followed, so its events are read from the oldest the stream keeps
    (other runs' are skipped): none is missed. With `tap`, a run in this process
    (chat/engine/tap.py), its events are read from memory instead, in the same order."""
    redis = live.redis_client()
    try:
        cursor = "0-0"
        subscribed.set()
        final_id = await in_db(_solo_answer_id, run_id)
        sent, seq = 0, 0
        over = False
        while not over:
            if tap is not None:
                entries = await _from_tap(tap)
            else:
                read = await live.read_events(redis, {conversation: cursor}, int(POLL_S * 1000))
                entries = read.get(conversation, [])
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
            saved = await in_db(_saved_text, final_id)
            if len(saved) > sent:
                yield "text", saved[sent:]
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()


async def _from_tap(tap: asyncio.Queue) -> list[live.Entry]:
    """What the run put in its tap since the last read; waits up to POLL_S for it."""
    try:
        events = [await asyncio.wait_for(tap.get(), POLL_S)]
    except TimeoutError:
        return []
    while not tap.empty():
        events.append(tap.get_nowait())
    return [("", event) for event in events]  # no stream ids: nothing resumes from here


def _solo_answer_id(run_id: int) -> int | None:
    run = Run.objects.get(pk=run_id)
    if run.config.get("judge"):
        return None
    seat = run.answers.filter(role=Answer.Role.SEAT).first()
    return seat.pk if seat else None


def _is_active(run_id: int) -> bool:
    return Run.objects.get(pk=run_id).is_active


def _saved_text(answer_id: int) -> str:
    return Answer.objects.values_list("text", flat=True).get(pk=answer_id)

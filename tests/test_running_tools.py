"""A tool call that is running is part of a conversation's snapshot until it ends, so a
page drawn again meanwhile (a new stage re-renders the thread, a reload) shows its row."""

import asyncio

import pytest

from chat.engine import events, live
from chat.models import Answer, Conversation, Message, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


def test_a_running_call_is_in_the_snapshot_until_its_step_is_done(alice):
    conversation = Conversation.objects.create(owner=alice, title="Ball")
    message = Message.objects.create(conversation=conversation, content="How much is the ball?")
    run = Run.objects.create(message=message, status=Run.Status.PANEL)
    answer = Answer.objects.create(run=run, model_name="Seat", status=Answer.Status.STREAMING)
    started = events.tool_started(answer, "c1", "web_fetch", '{"url": "https://example.org/ball"}')
    later = events.tool_started(answer, "c2", "run_python", '{"code": "print(0.05)"}')

    async def scenario() -> list[list[str]]:
        redis = live.redis_client()
        seen = []

        async def running() -> list[str]:
            snapshot = await events.conversation_snapshot(redis, conversation.pk)
            (item,) = snapshot["runs"][0]["answers"]
            return [call["id"] for call in item["tools"]]

        try:
            seen.append(await running())
            await live.announce(redis, conversation.events_key, started)
            await live.announce(redis, conversation.events_key, later)
            seen.append(await running())
            step = {"id": "c1", "name": "web_fetch", "arguments": "", "preview": "fetched"}
            await live.announce(redis, conversation.events_key, events.tool_done(answer, step))
            seen.append(await running())
            snapshot = await events.conversation_snapshot(redis, conversation.pk)
            # the event as the browser was sent it
            assert snapshot["runs"][0]["answers"][0]["tools"] == [later]
        finally:
            await redis.delete(conversation.events_key, f"fr:answer:{answer.pk}:tools")
            await redis.aclose()
        return seen

    assert asyncio.run(scenario()) == [[], ["c1", "c2"], ["c2"]]

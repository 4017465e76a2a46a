"""A message through the real parts: a Celery worker process takes the run, the
real local model streams it, deltas reach the conversation's stream in Redis, the
answer is saved. No fakes on the path."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model

from chat.engine import pipeline
from chat.engine.runs import create_run, start_run
from chat.models import Answer, Conversation, Run
from tests.pipeline_kit import listen

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def test_a_message_streams_through_worker_model_and_the_conversation_stream(live_stack, smollm2):
    alice = get_user_model().objects.create_user("alice", password="pw-long-enough-1")
    conversation = Conversation.objects.create(owner=alice, model=smollm2)

    async def scenario():
        listener = await listen(conversation.events_key, timeout=120)
        await sync_to_async(start_run)(conversation, "Name three colours of the rainbow.")
        return await listener

    events = async_to_sync(scenario)()
    run = Run.objects.get(message__conversation=conversation)
    answer = run.answers.get()
    assert run.status == Run.Status.DONE, run.failure_reason
    assert answer.status == Answer.Status.DONE and answer.text.strip()
    assert answer.output_tokens and answer.first_token_ms is not None

    deltas = [e for e in events if e["type"] == "answer.delta"]
    assert [e["seq"] for e in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(e["text"] for e in deltas) == answer.text
    # Coalesced: far fewer frames than tokens.
    assert len(deltas) < answer.output_tokens
    done = next(e for e in events if e["type"] == "answer.done")
    assert done["seq"] == len(deltas) and done["html"]


@pytest.mark.usefixtures("redis_ready")
def test_model_server_down_fails_the_answer_in_words(settings, smollm2):
    """The pipeline itself (in this process) against a port where no model serves."""
    settings.LOCAL_MODELS_PORT = 9
    settings.CALL_MAX_RETRIES = 0
    alice = get_user_model().objects.create_user("alice", password="pw-long-enough-1")
    conversation = Conversation.objects.create(owner=alice, model=smollm2)
    message = create_run(conversation, "hello?")  # run here, not by the live worker
    asyncio.run(pipeline.execute(message.run.pk))

    run = Run.objects.get(pk=message.run.pk)
    answer = run.answers.get()
    assert run.status == Run.Status.FAILED and answer.status == Answer.Status.FAILED
    assert "is not reachable" in answer.error and "model server running" in answer.error
    assert run.message.content == "hello?"  # what the user wrote is kept
    assert answer.attempts[0]["outcome"] == "failed"
    assert answer.error_kind == "connection"

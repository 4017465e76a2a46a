"""Sending messages over HTTP: validation, ownership, nothing lost."""

import subprocess
import sys

import pytest
from django.db import connection
from django.urls import reverse

from chat.models import Answer, Conversation, Message, Run
from tests.conftest import child_env, database_url


@pytest.fixture
def conversation(alice, smollm2):
    return Conversation.objects.create(owner=alice, model=smollm2, title="Hi")


def test_new_conversation_saves_message_and_queues_a_run(
    client, alice, smollm2, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("chat:start"), {"content": "What is 2+2?", "answerer": f"model:{smollm2.pk}"}
        )
    conversation = Conversation.objects.get(owner=alice)
    assert response.status_code == 302 and response.url == conversation.get_absolute_url()
    assert conversation.title == "What is 2+2?"
    run = Run.objects.get(message__conversation=conversation)
    assert run.status == Run.Status.QUEUED
    assert run.answers.get().model_name == "SmolLM2 135M Instruct (local)"
    assert len(callbacks) == 1  # enqueued only after commit


def test_send_returns_the_rendered_turn_escaped(
    client, alice, conversation, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks():
        response = client.post(
            reverse("chat:send", args=[conversation.pk]),
            {"content": "<script>alert(1)</script>"},
            HTTP_ACCEPT="application/json",
        )
    assert response.status_code == 201
    html = response.json()["html"]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_empty_message_is_refused_with_a_reason(client, alice, conversation):
    client.force_login(alice)
    response = client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": "   "},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Write a message first: it is empty."
    assert not Message.objects.exists()


def test_huge_message_is_refused_with_the_limit(client, alice, conversation):
    client.force_login(alice)
    response = client.post(reverse("chat:send", args=[conversation.pk]), {"content": "x" * 100_000})
    assert response.status_code == 413
    body = response.content.decode()
    assert "The message is 100,000 characters; the limit is 32,000" in body
    assert "x" * 1000 in body  # what was typed stays in the box
    assert not Message.objects.exists()


def test_someone_elses_conversation_is_not_found(client, bob, conversation):
    client.force_login(bob)
    assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 404
    response = client.post(reverse("chat:send", args=[conversation.pk]), {"content": "hi"})
    assert response.status_code == 404
    assert client.post(reverse("chat:delete", args=[conversation.pk])).status_code == 404
    assert client.get(reverse("chat:conversation", args=[999999])).status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_unknown_model_is_refused(client, alice):
    client.force_login(alice)
    response = client.post(reverse("chat:start"), {"content": "hi", "answerer": "model:999999"})
    assert response.status_code == 400
    assert not Conversation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_unreachable_queue_fails_the_run_in_words_and_keeps_the_message(conversation):
    """In a separate process whose REDIS_URL points where nothing listens."""
    message = Message.objects.create(conversation=conversation, content="keep me")
    run = Run.objects.create(message=message)
    Answer.objects.create(run=run, model_name="SmolLM2")
    env = child_env(
        DATABASE_URL=database_url(connection.settings_dict), REDIS_URL="redis://127.0.0.1:9/0"
    )
    code = f"import django; django.setup(); from chat.engine.runs import enqueue; enqueue({run.pk})"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.failure_reason == "queue_unreachable"
    assert "task queue is unreachable" in run.failure_detail
    assert run.answers.get().status == Answer.Status.FAILED
    assert Message.objects.get(pk=message.pk).content == "keep me"


def test_delete_removes_the_conversation(client, alice, conversation):
    client.force_login(alice)
    response = client.post(reverse("chat:delete", args=[conversation.pk]))
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_stop_a_queued_run_and_nobody_elses(
    client, alice, bob, conversation, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks():
        client.post(reverse("chat:send", args=[conversation.pk]), {"content": "hi"})
    run = Run.objects.get(message__conversation=conversation)
    client.force_login(bob)
    assert client.post(reverse("chat:cancel", args=[run.pk])).status_code == 404
    client.force_login(alice)
    response = client.post(reverse("chat:cancel", args=[run.pk]), HTTP_ACCEPT="application/json")
    assert response.json() == {"run": run.pk, "stopping": True}
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert Message.objects.get(pk=run.message_id).content == "hi"


def test_a_second_message_waits_for_the_live_run(
    client, alice, conversation, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks():
        client.post(reverse("chat:send", args=[conversation.pk]), {"content": "first"})
    response = client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": "second"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 409
    assert "Wait for the current answer, or stop it" in response.json()["error"]
    assert list(Message.objects.values_list("content", flat=True)) == ["first"]
    stop = client.post(
        reverse("chat:cancel", args=[Run.objects.get().pk]), HTTP_ACCEPT="application/json"
    )
    again = client.post(
        reverse("chat:cancel", args=[Run.objects.get().pk]), HTTP_ACCEPT="application/json"
    )
    assert (
        stop.json()["stopping"] is True and again.json()["stopping"] is False
    )  # twice is harmless

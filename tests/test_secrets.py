"""A canary key must reach the upstream and nowhere else: no log line, no page,
no websocket frame, no API response, no error message."""

import asyncio
import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chat.engine import pipeline
from chat.engine.runs import create_run
from chat.models import Answer, Conversation
from fusionroom.asgi import application
from panels.models import CatalogModel, Provider
from panels.provider_check import check_connection
from tests.scripted_server import Reply, ScriptedServer

CANARY = "sk-canary-7f3a9c0e1d2b5a66"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture
def upstream():
    with ScriptedServer() as server:
        yield server


def make_provider(upstream) -> CatalogModel:
    # Site-wide (admin-made) so it may point at loopback, where the upstream is.
    provider = Provider(name="Canary Cloud", base_url=upstream.base_url)
    provider.set_api_key(CANARY)
    provider.save()
    return CatalogModel.objects.create(
        provider=provider, model_id="canary-1", display_name="Canary 1", context_length=4096
    )


def test_the_canary_key_appears_nowhere_but_upstream(upstream, caplog):
    caplog.set_level(logging.DEBUG)
    model = make_provider(upstream)
    user = get_user_model().objects.create_superuser("root", password="pw-long-enough-1")
    conversation = Conversation.objects.create(owner=user, model=model)
    client = Client()
    client.force_login(user)
    upstream.enqueue(
        Reply.stream(["fine"]),
        # A refusal that echoes the key back, as some real APIs do.
        Reply.json(401, {"error": {"message": f"Incorrect API key provided: {CANARY}"}}),
    )
    frames: list[str] = []
    responses: list[str] = []
    # Run in this process; nothing is queued for a worker.
    runs = [create_run(conversation, text).run.pk for text in ("first", "second")]

    async def scenario():
        ws = WebsocketCommunicator(
            application,
            f"/ws/conversations/{conversation.pk}/",
            headers=[
                (b"origin", b"http://localhost"),
                (b"host", b"localhost"),
                (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
            ],
        )
        connected, _ = await ws.connect()
        assert connected
        for run_id in runs:
            await pipeline.execute(run_id)
        while not await ws.receive_nothing(timeout=0.5):
            frames.append(await ws.receive_from())
        await ws.disconnect()

    asyncio.run(scenario())

    answers = list(Answer.objects.order_by("pk"))
    assert answers[0].status == "done", answers[0].error
    assert answers[1].status == "failed" and "refused the key" in answers[1].error
    assert all(r["headers"]["Authorization"] == f"Bearer {CANARY}" for r in upstream.requests)

    pages = [
        reverse("chat:conversation", args=[conversation.pk]),
        reverse("panels:api_keys"),
        reverse("panels:list"),
        reverse("admin:panels_provider_change", args=[model.provider_id]),
        reverse("admin:panels_provider_changelist"),
        reverse("admin:chat_answer_change", args=[answers[1].pk]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        responses.append(response.content.decode())
    send = client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": "x"},
        HTTP_ACCEPT="application/json",
    )
    responses.append(send.content.decode())
    ok, words = check_connection(model.provider)  # the queue is empty: a failure, in words
    responses.append(words)

    assert len(frames) > 3
    for where, texts in (
        ("log", [r.getMessage() for r in caplog.records]),
        ("websocket", frames),
        ("page or response", responses),
        ("database answer", [a.error + a.text for a in answers]),
    ):
        leaks = [t for t in texts if CANARY in t]
        assert not leaks, f"the key leaked into a {where}: {leaks[0][:200]}"
    assert "[key]" in answers[1].error  # the echoed key was blanked out


def test_connection_check_reports_in_words(upstream):
    model = make_provider(upstream)
    upstream.enqueue(Reply.stream(["OK"]))
    ok, words = check_connection(model.provider)
    assert ok and words.startswith("Connected: Canary 1 answered")
    upstream.enqueue(Reply.json(404, {"error": {"message": "model canary-1 does not exist"}}))
    ok, words = check_connection(model.provider)
    assert not ok and "model not found" in words

"""Text a database cannot keep (NUL, lone surrogates) is refused at every door with
the field named — never a 500 from deep inside a save. Run on SQLite and on
PostgreSQL, which is the one that refuses NUL."""

import asyncio
import json

import pytest
from django.urls import reverse
from mcp.server.mcpserver.exceptions import ToolError

from chat.api.keys import create_key
from chat.models import Conversation, Message
from panels.models import Panel, Provider
from tests.test_panels import builder_post

NUL = "\x00"


@pytest.fixture
def models(smollm2):
    from panels.models import CatalogModel

    return smollm2, CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")


def _refused(response, field: str) -> str:
    body = response.content.decode()
    assert response.status_code == 400, body[:500]
    assert field in body and "NUL" in body
    return body


@pytest.mark.django_db
def test_a_chat_message_with_nul(client, alice, smollm2):
    client.force_login(alice)
    data = {"answerer": f"model:{smollm2.pk}", "content": f"Hello{NUL}there"}
    _refused(client.post(reverse("chat:start"), data), "content")
    conversation = Conversation.objects.create(owner=alice, model=smollm2)
    response = client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": f"a{NUL}b"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and response.json()["field"] == "content"
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_builder_provider_rename_and_search_fields(client, alice, models):
    client.force_login(alice)
    _refused(client.post(reverse("panels:new"), builder_post(models, name=f"P{NUL}")), "name")
    assert not Panel.objects.filter(owner=alice).exists()
    provider = {"name": f"Mine{NUL}", "kind": "openai", "base_url": "https://example.com/v1"}
    _refused(client.post(reverse("panels:api_keys"), provider), "name")
    assert not Provider.objects.filter(owner=alice).exists()
    conversation = Conversation.objects.create(owner=alice, title="kept")
    _refused(client.post(reverse("chat:rename", args=[conversation.pk]), {"title": NUL}), "title")
    conversation.refresh_from_db()
    assert conversation.title == "kept"
    _refused(client.get(reverse("chat:home"), {"q": f"x{NUL}"}), "q")
    _refused(client.post(reverse("chat:api_key_create"), {"name": NUL}), "name")


@pytest.mark.django_db
def test_a_recipe_with_nul_or_a_lone_surrogate_names_the_field(client, alice, models):
    client.force_login(alice)
    recipe = {"schema": 1, "name": "R", "seats": [{"system_prompt": "be\u0000good"}]}
    response = client.post(reverse("panels:import"), {"text": json.dumps(recipe)})
    assert response.status_code == 400
    assert "seats[0].system_prompt" in response.content.decode()
    surrogate = '{"schema": 1, "name": "\\ud800"}'
    response = client.post(reverse("panels:import"), {"text": surrogate})
    assert response.status_code == 400 and "surrogate" in response.content.decode()
    assert not Panel.objects.filter(owner=alice).exists()


@pytest.mark.django_db(transaction=True)
def test_an_api_message_with_nul_is_a_400_naming_the_param(client, alice):
    _, key = create_key(alice, "k")
    body = {"model": "fusion", "messages": [{"role": "user", "content": f"hi{NUL}"}]}
    response = client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["param"] == "messages[0].content" and "NUL" in error["message"]
    assert not Message.objects.exists()


def test_an_mcp_question_with_nul_is_a_tool_error():
    from chat.api.mcp_server import fusion

    with pytest.raises(ToolError, match="question contains a NUL"):
        asyncio.run(fusion(f"What{NUL}?", None))

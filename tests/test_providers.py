"""Provider records: keys encrypted and write-only, site providers from the
environment, the OpenRouter model sync, users' own providers and who may touch them."""

import io
from decimal import Decimal

import httpx
import pytest
from django.core.management import call_command
from django.urls import reverse

from panels.catalog import sync_site_providers
from panels.models import CatalogModel, Provider
from panels.providers import ChatMessage, ChatRequest, TextDelta, Usage, provider_for
from tests.scripted_server import Reply, ScriptedServer

KEY = "sk-or-v1-0123456789abcdef4321"


def test_keys_are_encrypted_and_only_a_hint_is_kept(db):
    provider = Provider(name="X", base_url="https://example.org/v1")
    provider.set_api_key(KEY)
    provider.save()
    stored = Provider.objects.values("api_key_encrypted", "key_hint").get(pk=provider.pk)
    assert KEY not in stored["api_key_encrypted"]
    assert stored["key_hint"] == "sk-…4321"
    assert provider.reveal_api_key(purpose="test") == KEY
    assert KEY not in repr(provider.endpoint())


def test_environment_keys_create_site_providers(db, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-0000000000009999")
    sync_site_providers()
    sync_site_providers()  # idempotent
    openrouter = Provider.objects.get(owner=None, name="OpenRouter")
    assert openrouter.source == "env" and openrouter.base_url == "https://openrouter.ai/api/v1"
    assert openrouter.reveal_api_key(purpose="test") == KEY
    assert openrouter.models.filter(model_id="openai/gpt-4o-mini").exists()
    assert dict(openrouter.endpoint().extra_headers)["X-Title"] == "Fusion Room"
    assert Provider.objects.get(name="Anthropic").kind == "anthropic"
    assert not Provider.objects.filter(name="OpenAI").exists()  # no key, no provider
    local = CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")
    assert local.provider.source == "local" and local.input_price == 0


def test_openrouter_model_sync(db):
    models = {
        "data": [
            {
                "id": "acme/fast",
                "name": "Acme Fast",
                "context_length": 32000,
                "pricing": {"prompt": "0.0000005", "completion": "0.0000015"},
                "supported_parameters": ["tools", "temperature"],
            },
            {"id": "acme/odd", "pricing": {"prompt": "-1", "completion": "-1"}},
        ]
    }
    with ScriptedServer() as server:
        server.enqueue(Reply.json(200, models))
        provider = Provider(name="OpenRouter", base_url=server.base_url)
        provider.set_api_key(KEY)
        provider.save()
        out = io.StringIO()
        call_command("sync_openrouter", stdout=out)
        assert "1 models added" not in out.getvalue() and "2 models added" in out.getvalue()
        assert server.requests[0]["path"] == "/v1/models"
        assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    fast = CatalogModel.objects.get(model_id="acme/fast")
    assert (fast.input_price, fast.output_price) == (Decimal("0.5"), Decimal("1.5"))
    assert fast.supports_tools and fast.context_length == 32000
    odd = CatalogModel.objects.get(model_id="acme/odd")
    assert odd.input_price is None and not odd.price_known  # unknown, not zero


@pytest.mark.stack
async def test_openai_kind_against_the_real_local_model_server(model_servers):
    from panels import local_models

    model = local_models.SMOLLM2
    request = ChatRequest(
        model=model.key, messages=(ChatMessage("user", "Say hello."),), max_tokens=12
    )
    async with httpx.AsyncClient() as client:
        events = [e async for e in provider_for(model.endpoint, client).stream(request)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    usage = next(e for e in events if isinstance(e, Usage))
    assert text.strip()
    assert not usage.estimated and 0 < usage.output_tokens <= 12  # max_tokens was sent


class TestUserProviders:
    def add(self, client, user, **fields):
        client.force_login(user)
        data = {
            "name": "Mine",
            "kind": "openai",
            "base_url": "https://93.184.216.34/v1",
            "api_key": KEY,
            "models": "acme/fast\nacme/slow",
            "is_active": "on",
        }
        return client.post(reverse("panels:api_keys"), {**data, **fields})

    def test_add_shows_only_the_hint(self, client, alice):
        response = self.add(client, alice)
        assert response.status_code == 302
        provider = Provider.objects.get(owner=alice)
        assert provider.source == "user" and provider.models.count() == 2
        page = client.get(reverse("panels:api_keys")).content.decode()
        assert "sk-…4321" in page and KEY not in page
        edit = client.get(reverse("panels:provider_edit", args=[provider.pk])).content.decode()
        assert KEY not in edit and "Stored key: sk-…4321" in edit

    def test_blank_key_on_edit_keeps_the_key(self, client, alice):
        self.add(client, alice)
        provider = Provider.objects.get(owner=alice)
        response = client.post(
            reverse("panels:provider_edit", args=[provider.pk]),
            {
                "name": "Renamed",
                "kind": "openai",
                "base_url": provider.base_url,
                "api_key": "",
                "is_active": "on",
            },
        )
        assert response.status_code == 302
        provider.refresh_from_db()
        assert provider.name == "Renamed" and provider.reveal_api_key(purpose="test") == KEY

    @pytest.mark.parametrize(
        "url, words",
        [
            ("http://127.0.0.1:8081/v1", "only public addresses"),
            ("http://localhost/v1", "only public addresses"),
            ("http://[::ffff:10.0.0.1]/v1", "only public addresses"),
            ("http://169.254.169.254/latest", "only public addresses"),
        ],
    )
    def test_private_base_urls_are_refused(self, client, alice, url, words):
        response = self.add(client, alice, base_url=url)
        assert response.status_code == 400
        assert words in response.content.decode()
        assert not Provider.objects.filter(owner=alice).exists()

    def test_others_cannot_touch_it(self, client, alice, charlie):
        self.add(client, alice)
        provider = Provider.objects.get(owner=alice)
        client.force_login(charlie)
        for name in ("panels:provider_edit", "panels:provider_delete", "panels:provider_test"):
            assert client.post(reverse(name, args=[provider.pk])).status_code == 404
        assert client.get(reverse("panels:provider_edit", args=[provider.pk])).status_code == 404
        page = client.get(reverse("panels:api_keys")).content.decode()
        assert "Mine" not in page
        assert Provider.objects.filter(pk=provider.pk).exists()

    def test_their_models_are_theirs_alone(self, client, alice, charlie):
        self.add(client, alice)
        assert CatalogModel.objects.usable_by(alice).filter(model_id="acme/fast").exists()
        assert not CatalogModel.objects.usable_by(charlie).filter(model_id="acme/fast").exists()

"""The API's model ids (chat/api/answerers.py, catalog_ids.py): each model listed
once under a unique id, the qualified id always accepted, panels' ids never
shadowed, and nothing listed or found that the caller may not use."""

import pytest

from chat.api import answerers
from panels.models import CatalogModel, Panel, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_catalog(db):
    """Only each test's own models (the migrations bring the bundled ones)."""
    Provider.objects.all().delete()


def _model(provider: Provider, model_id: str, **fields) -> CatalogModel:
    return CatalogModel.objects.create(
        provider=provider, model_id=model_id, display_name=model_id, **fields
    )


def _provider(name: str, owner=None) -> Provider:
    return Provider.objects.create(name=name, owner=owner, base_url="https://api.example.com/v1")


def _listed(user) -> dict[str, dict]:
    return {m["id"]: m for m in answerers.listing(user) if "pricing" in m}


def test_a_model_id_held_by_two_providers_stays_with_the_oldest(alice):
    first = _model(_provider("Hosted One"), "gpt-4o-mini")
    second = _model(_provider("Hosted Two"), "gpt-4o-mini")
    assert set(_listed(alice)) == {"gpt-4o-mini", "hosted-two/gpt-4o-mini"}
    assert answerers.resolve("gpt-4o-mini", alice) == first
    assert answerers.resolve("hosted-two/gpt-4o-mini", alice) == second
    # The qualified id works for the bare one too: code may always send it.
    assert answerers.resolve("hosted-one/gpt-4o-mini", alice) == first


def test_a_users_own_provider_named_like_the_sites_gets_its_number(alice, bob):
    site = _model(_provider("OpenRouter"), "openai/gpt-4o")
    own_provider = _provider("OpenRouter", owner=alice)
    own = _model(own_provider, "openai/gpt-4o")
    listed = _listed(alice)
    assert set(listed) == {"openai/gpt-4o", f"openrouter-{own_provider.pk}/openai/gpt-4o"}
    assert answerers.resolve("openrouter/openai/gpt-4o", alice) == site
    assert answerers.resolve(f"openrouter-{own_provider.pk}/openai/gpt-4o", alice) == own
    # Bob sees the site's model only, and cannot reach Alice's by any id.
    assert set(_listed(bob)) == {"openai/gpt-4o"}
    assert answerers.resolve(f"openrouter-{own_provider.pk}/openai/gpt-4o", bob) is None


def test_a_bare_id_that_reads_as_another_models_qualified_id_is_qualified(alice):
    """OpenRouter's `openai/gpt-4o` beside a provider named OpenAI serving `gpt-4o`:
    the id `openai/gpt-4o` is the latter's, always."""
    via_router = _model(_provider("OpenRouter"), "openai/gpt-4o")
    direct = _model(_provider("OpenAI"), "gpt-4o")
    assert set(_listed(alice)) == {"openrouter/openai/gpt-4o", "gpt-4o"}
    assert answerers.resolve("openai/gpt-4o", alice) == direct
    assert answerers.resolve("openrouter/openai/gpt-4o", alice) == via_router


def test_panel_ids_are_never_a_catalog_models(alice):
    looping = _model(_provider("Fusion"), "fusion/loop")
    Panel.objects.create(owner=alice, slug="loop", name="Loop")
    listed = _listed(alice)
    provider_key = f"fusion-{looping.provider_id}"
    assert set(listed) == {f"{provider_key}/fusion/loop"}
    assert isinstance(answerers.resolve("fusion/loop", alice), Panel)
    assert answerers.resolve(f"{provider_key}/fusion/loop", alice) == looping
    assert answerers.resolve("fusion/nope", alice) is None


def test_switched_off_models_and_providers_are_neither_listed_nor_found(alice):
    _model(_provider("Hosted"), "retired", is_active=False)
    off = _provider("Off")
    _model(off, "dark")
    off.is_active = False
    off.save()
    assert _listed(alice) == {}
    assert answerers.resolve("retired", alice) is None
    assert answerers.resolve("dark", alice) is None
    assert answerers.resolve("off/dark", alice) is None


def test_a_listed_model_carries_its_context_and_prices_per_token(alice):
    provider = _provider("Hosted")
    _model(provider, "priced", context_length=128000, input_price="0.15", output_price="0.6")
    _model(provider, "unpriced")
    _model(provider, "free", input_price="0", output_price="0")
    listed = _listed(alice)
    assert listed["priced"] == {
        "id": "priced",
        "object": "model",
        "created": int(provider.created_at.timestamp()),
        "owned_by": "Hosted",
        "name": "priced",
        "context_length": 128000,
        "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
    }
    assert listed["unpriced"]["pricing"] == {"prompt": None, "completion": None}
    assert listed["free"]["pricing"] == {"prompt": "0", "completion": "0"}
    panels = [m["id"] for m in answerers.listing(alice) if "pricing" not in m]
    assert panels[0] == "fusion"  # the panels come first, as before

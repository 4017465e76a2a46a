"""Sync OpenRouter's public model list (ids, context lengths, live prices)."""

from decimal import Decimal, InvalidOperation

import httpx

from .models import CatalogModel, Provider

MILLION = Decimal(1_000_000)


class SyncError(Exception):
    pass


def _per_million(value) -> Decimal | None:
    """OpenRouter gives USD per token as a string; "-1" means variable (unknown)."""
    try:
        price = Decimal(str(value))
    except (InvalidOperation, TypeError):
        return None
    return None if price < 0 else (price * MILLION).quantize(Decimal("0.000001"))


def sync_models(provider: Provider, timeout: float = 30.0) -> tuple[int, int]:
    """Create or update the provider's catalog from its /models list.
    Returns (created, updated)."""
    if not provider.is_site_wide:
        raise SyncError("Only site-wide providers are synced; a user's provider lists its models.")
    url = provider.base_url.rstrip("/") + "/models"
    headers = {}
    if key := provider.reveal_api_key(purpose="model list sync"):
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = httpx.get(
            url, headers=headers, timeout=timeout, follow_redirects=False, trust_env=False
        )
        response.raise_for_status()
        entries = response.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise SyncError(f"Could not read the model list of {provider}: {exc}") from None
    created = updated = 0
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        pricing = entry.get("pricing") or {}
        fields = {
            "display_name": (entry.get("name") or entry["id"])[:200],
            "context_length": int(entry.get("context_length") or 8192),
            "input_price": _per_million(pricing.get("prompt")),
            "output_price": _per_million(pricing.get("completion")),
            "supports_tools": "tools" in (entry.get("supported_parameters") or []),
            "source": CatalogModel.Source.OPENROUTER,
        }
        # An administrator may have switched a model off: a sync never turns it back on.
        _, was_created = CatalogModel.objects.update_or_create(
            provider=provider,
            model_id=entry["id"],
            defaults=fields,
            create_defaults={**fields, "is_active": True},
        )
        created += was_created
        updated += not was_created
    return created, updated

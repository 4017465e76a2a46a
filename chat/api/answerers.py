"""What a request's `model` names, and what GET /v1/models lists: the one place
the API turns a model id into whoever answers.

- `fusion`: the default panel (`API_DEFAULT_PANEL`); `fusion/<slug>`: a panel the
  caller may reach (presets, their own, public and unlisted ones).
- any other id: one catalog model the caller may use, answering alone
  (chat/api/catalog_ids.py says what its ids look like).

Panel ids come first: a catalog model is never listed under an id a panel holds.
"""

import time
from decimal import Decimal

from django.conf import settings

from panels.models import CatalogModel, Panel

from . import catalog_ids

Answerer = Panel | CatalogModel

PANEL_PREFIX = "fusion/"


def is_panel_id(model: str) -> bool:
    """Ids that name a panel, found or not (so never a catalog model's)."""
    return model == "fusion" or model.startswith(PANEL_PREFIX)


def resolve(model: str, user) -> Answerer | None:
    """Whoever answers `model` for this user; None when nothing they may use has
    that id (the caller is then told to look at GET /v1/models)."""
    if is_panel_id(model):
        slug = settings.API_DEFAULT_PANEL if model == "fusion" else model.removeprefix(PANEL_PREFIX)
        return Panel.objects.reachable_by(user).filter(slug=slug).first()
    return catalog_ids.find(model, user, is_panel_id)


def listing(user) -> list[dict]:
    """GET /v1/models' `data`: the default panel, the panels the user may pick,
    then the catalog models they may call alone, with their context length and
    prices per token (OpenRouter's extensions)."""
    panels = Panel.objects.visible_to(user).select_related("owner").order_by("slug")
    data = [
        {
            "id": "fusion",
            "object": "model",
            "created": int(time.time()),
            "owned_by": "fusion-conversation",
        }
    ]
    data += [
        {
            "id": f"{PANEL_PREFIX}{p.slug}",
            "object": "model",
            "created": int(p.created_at.timestamp()),
            "owned_by": p.owner.username if p.owner_id else "fusion-conversation",
            "name": p.name,
            "description": p.description,
        }
        for p in panels
    ]
    data += [_model_entry(model, ids) for model, ids in catalog_ids.all_ids(user, is_panel_id)]
    return data


def _model_entry(model: CatalogModel, ids: catalog_ids.ModelIds) -> dict:
    return {
        "id": ids.listed,
        "object": "model",
        "created": int(model.provider.created_at.timestamp()),
        "owned_by": model.provider.name,
        "name": model.display_name,
        "context_length": model.context_length,
        "pricing": {
            "prompt": _per_token(model.input_price),
            "completion": _per_token(model.output_price),
        },
    }


def _per_token(per_million: Decimal | None) -> str | None:
    """USD a token as a plain decimal string ("0.00000015"), as OpenRouter writes
    prices; None when the catalog does not know it (never a silent zero)."""
    if per_million is None:
        return None
    return format((per_million / Decimal(1_000_000)).normalize(), "f")

"""The API's ids of catalog models: what GET /v1/models lists and `model` accepts
for one model answering alone.

Two forms, both accepted:

- qualified, `<provider>/<model_id>`: the provider's name as a slug
  ("Local · SmolLM2 135M Instruct" → `local-smollm2-135m-instruct`) and the id the
  provider's API expects. Always unique; it changes only when the provider is
  renamed. A site-wide provider keeps its plain slug; a user's own provider whose
  slug another provider already has (their own "OpenRouter" beside the site's) gets
  `-<provider number>` after it, as does a slug a panel id would shadow.
- bare, `<model_id>` alone (`smollm2-135m`, `gpt-4o-mini`), as OpenAI's ids look:
  listed for the oldest of the caller's models with that id, so adding a second
  provider of the same model never takes it from the one a caller already uses.
  The others sharing it are listed by their qualified id, and so is a model whose
  bare id would read as another model's qualified id, or as a panel's id.

Every call works out the ids among the caller's usable models only, so two users
may see one model under different ids when their own providers differ; code that
must never change can always send the qualified id.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Q
from django.utils.text import slugify

from panels.models import CatalogModel, Provider


@dataclass(frozen=True)
class ModelIds:
    listed: str  # the id GET /v1/models shows
    qualified: str  # `<provider>/<model_id>`, accepted as well


def provider_keys(user, reserved: Callable[[str], bool]) -> dict[int, str]:
    """Each usable provider's slug in qualified ids: site-wide ones first, then
    oldest first, so a newcomer never takes a name already in use."""
    providers = Provider.objects.filter(
        Q(owner__isnull=True) | Q(owner=user), is_active=True
    ).order_by("pk")
    keys: dict[int, str] = {}
    used: set[str] = set()
    for provider in sorted(providers, key=lambda p: (p.owner_id is not None, p.pk)):
        key = slugify(provider.name) or "provider"
        if key in used or reserved(f"{key}/"):
            key = f"{key}-{provider.pk}"
        used.add(key)
        keys[provider.pk] = key
    return keys


def assign(
    models: Iterable[CatalogModel], keys: dict[int, str], reserved: Callable[[str], bool]
) -> dict[int, ModelIds]:
    """The ids of `models` (by catalog pk). Correct for any set that holds, for each
    of its model_ids, every usable model with that model_id."""
    models = sorted(models, key=lambda m: m.pk)
    qualified = {}
    for model in models:
        key = keys[model.provider_id]
        name = f"{key}/{model.model_id}"
        qualified[model.pk] = (
            f"{key}-{model.provider_id}/{model.model_id}" if reserved(name) else name
        )
    taken = set(qualified.values())
    sharing: dict[str, list[CatalogModel]] = defaultdict(list)
    for model in models:
        sharing[model.model_id].append(model)
    ids = {}
    for model_id, group in sharing.items():
        bare_free = model_id not in taken and not reserved(model_id)
        for model in group:
            bare = bare_free and model is group[0]
            ids[model.pk] = ModelIds(model_id if bare else qualified[model.pk], qualified[model.pk])
    return ids


def usable(user):
    return CatalogModel.objects.usable_by(user).select_related("provider")


def all_ids(user, reserved: Callable[[str], bool]) -> list[tuple[CatalogModel, ModelIds]]:
    """Every model this user may call, with its ids, in listed-id order."""
    models = list(usable(user))
    ids = assign(models, provider_keys(user, reserved), reserved)
    return sorted(((m, ids[m.pk]) for m in models), key=lambda pair: pair[1].listed)


def find(model: str, user, reserved: Callable[[str], bool]) -> CatalogModel | None:
    """The usable model whose listed or qualified id is `model`, or None. Looks only
    at the models that could bear it: those with `model` as their model_id, and
    those whose qualified id it could be (the part after its first slash)."""
    tail = model.split("/", 1)[1] if "/" in model else model
    candidates = list(usable(user).filter(model_id__in={model, tail}))
    if not candidates:
        return None
    ids = assign(candidates, provider_keys(user, reserved), reserved)
    for candidate in candidates:
        if model in (ids[candidate.pk].listed, ids[candidate.pk].qualified):
            return candidate
    return None

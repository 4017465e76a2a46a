"""Panel recipes: a panel as versioned JSON, to export, share and import.

A recipe names models by provider and model id, never by keys or database ids, so
it travels between servers. Import validates every field and names the one that
is wrong; models the importer cannot reach are reported so they can be swapped
before anything is saved. The schema is documented in docs/RECIPES.md.

Long on purpose: reading and writing a recipe are one format, kept in step here
(tests/test_recipe_property.py round-trips them).
"""

import json
from dataclasses import dataclass, field

from django.db import transaction

from core import storable

from . import bounds, quotas, strategy_settings
from .models import CatalogModel, Panel, Seat

# 2 added strategies: "strategy", "router", and the seats' "weight", "tags", "tier".
# Version 1 recipes still import (as fusion panels with default weights and tiers).
SCHEMA_VERSION = 2
MAX_BYTES = 256 * 1024
MAX_SEATS = 8
_TOP = {
    "schema",
    "name",
    "description",
    "seats",
    "judge",
    "synthesizer",
    "synthesizer_fallback",
    "judge_drafts",
    "min_answers",
    "deadline_s",
    "strategy",
    "router",
    "tools",
    "judge_tools",
    "excluded_domains",
}
_SEAT = {
    "model",
    "fallbacks",
    "system_prompt",
    "temperature",
    "max_tokens",
    "timeouts",
    "weight",
    "tags",
    "tier",
    "use_tools",
    "max_tool_calls",
}
# The recipe's names of a seat's time limits, and the Seat fields they fill.
_TIMEOUTS = {
    "first_token_s": "first_token_timeout_s",
    "idle_s": "idle_timeout_s",
    "total_s": "total_timeout_s",
}


class RecipeError(ValueError):
    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where


def _ref(model: CatalogModel | None) -> dict | None:
    if model is None:
        return None
    return {"provider": model.provider.name, "model": model.model_id}


def to_recipe(panel: Panel) -> dict:
    seats = panel.seats.select_related("model__provider").order_by("position")
    fallbacks = CatalogModel.objects.select_related("provider").in_bulk(
        [i for seat in seats for i in seat.fallback_ids]
    )
    return {
        "schema": SCHEMA_VERSION,
        "name": panel.name,
        "description": panel.description,
        "seats": [
            {
                "model": _ref(seat.model),
                "fallbacks": [_ref(fallbacks[i]) for i in seat.fallback_ids if i in fallbacks],
                "system_prompt": seat.system_prompt,
                "temperature": seat.temperature,
                "max_tokens": seat.max_tokens,
                "timeouts": {
                    "first_token_s": seat.first_token_timeout_s,
                    "idle_s": seat.idle_timeout_s,
                    "total_s": seat.total_timeout_s,
                },
                "weight": seat.weight,
                "tags": list(seat.tags),
                "tier": seat.tier,
                "use_tools": seat.use_tools,
                "max_tool_calls": seat.max_tool_calls,
            }
            for seat in seats
        ],
        "judge": _ref(panel.judge),
        "synthesizer": _ref(panel.synthesizer),
        "synthesizer_fallback": _ref(panel.synthesizer_fallback),
        "judge_drafts": panel.judge_drafts,
        "min_answers": panel.min_answers,
        "deadline_s": panel.deadline_s,
        "strategy": {
            "name": panel.strategy,
            **strategy_settings.clean_settings(panel.strategy, panel.strategy_settings),
        },
        "router": _ref(panel.router),
        "tools": list(panel.tools),
        "judge_tools": panel.judge_tools,
        "excluded_domains": list(panel.excluded_domains),
    }


@dataclass
class Imported:
    """A validated recipe, its models resolved for one user."""

    data: dict
    models: dict[tuple[str, str], CatalogModel] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "seat 2: Provider / model"


def parse(text: str | bytes) -> dict:
    if len(text) > MAX_BYTES:
        raise RecipeError("recipe", f"is {len(text):,} bytes; a recipe is at most {MAX_BYTES:,}")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecipeError:
        raise
    except ValueError as exc:
        raise RecipeError("recipe", f"is not valid JSON ({exc})") from None
    if hit := storable.find(data, ""):
        raise RecipeError(*hit)
    return validate(data)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON allows a key twice (the last wins); in a recipe that hides a mistake."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise RecipeError(key, "appears twice")
        seen[key] = value
    return seen


def _number(where: str, value, bound: bounds.Bound, optional=True):
    if value is None and optional:
        return None
    if not bound.allows(value):
        raise RecipeError(where, f"must be {bound.span}" + (" or null" if optional else ""))
    return value


def _seat_number(where: str, values: dict, field: str, key: str = "", default=None):
    """A seat's number (the Seat `field`, named `key` in the recipe when that differs),
    checked against the builder's bound for the same field. No default: null allowed."""
    key = key or field
    optional = default is None
    return _number(f"{where}.{key}", values.get(key, default), bounds.SEAT[field](), optional)


def _model_ref(where: str, value, optional=False) -> dict | None:
    if value is None and optional:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"provider", "model"}
        or not all(isinstance(v, str) and v.strip() for v in value.values())
    ):
        raise RecipeError(where, 'must be {"provider": "...", "model": "..."}')
    return {"provider": value["provider"].strip(), "model": value["model"].strip()}


def _text(where: str, value, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise RecipeError(where, f"must be text of at most {limit:,} characters")
    return value


TOOL_NAMES = ("web_search", "web_fetch", "run_python")


def _bool(where: str, value) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(where, "must be true or false")
    return value


def _tools(value) -> list[str]:
    if not isinstance(value, list) or any(t not in TOOL_NAMES for t in value):
        raise RecipeError("tools", f"must list tools among {', '.join(TOOL_NAMES)}")
    return [t for t in TOOL_NAMES if t in value]


def _domains(value) -> list[str]:
    if not isinstance(value, list) or len(value) > 100:
        raise RecipeError("excluded_domains", "must be a list of at most 100 domain names")
    domains = []
    for item in value:
        domain = item.strip().lower().strip(".") if isinstance(item, str) else ""
        if not domain or len(domain) > 253 or " " in domain or "/" in domain:
            raise RecipeError("excluded_domains", f"{item!r} is not a domain name")
        domains.append(domain)
    return domains


def _tags(where: str, value) -> list[str]:
    if not isinstance(value, list) or len(value) > 12:
        raise RecipeError(where, "must be a list of at most 12 categories")
    if not all(isinstance(t, str) and 0 < len(t) <= 30 for t in value):
        raise RecipeError(where, "must hold category names (short words)")
    return [t.strip().lower() for t in value]


def validate(data) -> dict:
    """The recipe with every field checked; raises RecipeError naming the field."""
    if not isinstance(data, dict):
        raise RecipeError("recipe", "must be a JSON object")
    if unknown := set(data) - _TOP:
        raise RecipeError(sorted(unknown)[0], "is not a recipe field")
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise RecipeError("schema", f"must be the schema version ({SCHEMA_VERSION})")
    if schema > SCHEMA_VERSION:
        raise RecipeError(
            "schema",
            f"is version {schema}, from a newer Fusion Room; this "
            f"server reads version {SCHEMA_VERSION}",
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise RecipeError("name", "must be a name of 1 to 80 characters")
    seats = data.get("seats")
    if not isinstance(seats, list) or not seats:
        raise RecipeError("seats", "must list at least one seat")
    if len(seats) > MAX_SEATS:
        raise RecipeError("seats", f"has {len(seats)} seats; a panel has at most {MAX_SEATS}")
    clean_seats = []
    for i, seat in enumerate(seats, start=1):
        where = f"seats[{i}]"
        if not isinstance(seat, dict):
            raise RecipeError(where, "must be an object")
        if unknown := set(seat) - _SEAT:
            raise RecipeError(f"{where}.{sorted(unknown)[0]}", "is not a seat field")
        timeouts = seat.get("timeouts") or {}
        if not isinstance(timeouts, dict) or set(timeouts) - _TIMEOUTS.keys():
            raise RecipeError(f"{where}.timeouts", f"may only hold {', '.join(sorted(_TIMEOUTS))}")
        fallbacks = seat.get("fallbacks") or []
        if not isinstance(fallbacks, list) or len(fallbacks) > 3:
            raise RecipeError(f"{where}.fallbacks", "must be a list of at most 3 models")
        clean_seats.append(
            {
                "model": _model_ref(f"{where}.model", seat.get("model")),
                "fallbacks": [
                    _model_ref(f"{where}.fallbacks[{j}]", f)
                    for j, f in enumerate(fallbacks, start=1)
                ],
                "system_prompt": _text(f"{where}.system_prompt", seat.get("system_prompt"), 8000),
                "temperature": _seat_number(where, seat, "temperature"),
                "max_tokens": _seat_number(where, seat, "max_tokens"),
                "timeouts": {
                    key: _seat_number(f"{where}.timeouts", timeouts, _TIMEOUTS[key], key)
                    for key in sorted(_TIMEOUTS)
                },
                "weight": float(_seat_number(where, seat, "weight", default=1.0)),
                "tags": _tags(f"{where}.tags", seat.get("tags", [])),
                "tier": _seat_number(where, seat, "tier", default=1),
                "use_tools": _bool(f"{where}.use_tools", seat.get("use_tools", True)),
                "max_tool_calls": _seat_number(where, seat, "max_tool_calls", default=8),
            }
        )
    min_answers = _number("min_answers", data.get("min_answers"), bounds.quorum(len(seats)))
    drafts = data.get("judge_drafts", False)
    if not isinstance(drafts, bool):
        raise RecipeError("judge_drafts", "must be true or false")
    strategy = data.get("strategy") or {"name": strategy_settings.FUSION}
    if not isinstance(strategy, dict) or not isinstance(strategy.get("name"), str):
        raise RecipeError("strategy", 'must be {"name": "fusion" | "vote" | …, …settings}')
    settings = {k: v for k, v in strategy.items() if k != "name"}
    try:
        settings = strategy_settings.clean_settings(strategy["name"], settings, clean_seats)
    except strategy_settings.SettingsError as error:
        field = error.field
        if field == "strategy":
            field = "strategy.name"
        elif not field.startswith("seats"):
            field = f"strategy.{field}"
        raise RecipeError(field, error.message) from None
    return {
        "schema": SCHEMA_VERSION,
        "strategy": {"name": strategy["name"], **settings},
        "router": _model_ref("router", data.get("router"), optional=True),
        "tools": _tools(data.get("tools", [])),
        "judge_tools": _bool("judge_tools", data.get("judge_tools", False)),
        "excluded_domains": _domains(data.get("excluded_domains", [])),
        "name": name.strip(),
        "description": _text("description", data.get("description"), 2000),
        "seats": clean_seats,
        "judge": _model_ref("judge", data.get("judge")),
        "synthesizer": _model_ref("synthesizer", data.get("synthesizer"), optional=True),
        "synthesizer_fallback": _model_ref(
            "synthesizer_fallback", data.get("synthesizer_fallback"), optional=True
        ),
        "judge_drafts": drafts,
        "min_answers": min_answers,
        "deadline_s": _number(
            "deadline_s", data.get("deadline_s", 120), bounds.deadline(), optional=False
        ),
    }


def resolve(data: dict, user) -> Imported:
    """Find each named model among those the user can reach."""
    usable = CatalogModel.objects.usable_by(user).select_related("provider")
    imported = Imported(data)

    def find(where: str, ref: dict | None) -> None:
        if ref is None:
            return
        key = (ref["provider"], ref["model"])
        match = usable.filter(model_id=ref["model"], provider__name=ref["provider"]).first()
        match = match or usable.filter(model_id=ref["model"]).first()
        if match is None:
            imported.missing.append(f"{where}: {ref['provider']} / {ref['model']}")
        else:
            imported.models[key] = match

    for i, seat in enumerate(data["seats"], start=1):
        find(f"seat {i}", seat["model"])
        for fallback in seat["fallbacks"]:
            find(f"seat {i} fallback", fallback)
    for key in ("judge", "synthesizer", "synthesizer_fallback", "router"):
        find(key.replace("_", " "), data[key])
    return imported


def build(imported: Imported, owner=None, slug: str = "") -> tuple[Panel, list[Seat]]:
    """The panel and seats a resolved recipe describes, not saved (every model must
    have resolved: see `resolve`)."""
    if imported.missing:
        raise RecipeError("models", "not reachable here: " + "; ".join(imported.missing))
    data, found = imported.data, imported.models

    def model(ref):
        return None if ref is None else found[(ref["provider"], ref["model"])]

    panel = Panel(
        owner=owner,
        slug=slug,
        name=data["name"],
        description=data["description"],
        judge=model(data["judge"]),
        synthesizer=model(data["synthesizer"]),
        synthesizer_fallback=model(data["synthesizer_fallback"]),
        judge_drafts=data["judge_drafts"],
        min_answers=data["min_answers"],
        deadline_s=data["deadline_s"],
        tools=data["tools"],
        judge_tools=data["judge_tools"],
        excluded_domains=data["excluded_domains"],
        strategy=data["strategy"]["name"],
        strategy_settings={k: v for k, v in data["strategy"].items() if k != "name"},
        router=model(data["router"]),
    )
    seats = []
    for position, seat in enumerate(data["seats"]):
        t = seat["timeouts"]
        seats.append(
            Seat(
                position=position,
                model=model(seat["model"]),
                fallback_ids=[model(f).pk for f in seat["fallbacks"]],
                system_prompt=seat["system_prompt"],
                temperature=seat["temperature"],
                max_tokens=seat["max_tokens"],
                first_token_timeout_s=t["first_token_s"],
                idle_timeout_s=t["idle_s"],
                total_timeout_s=t["total_s"],
                weight=seat["weight"],
                tags=seat["tags"],
                tier=seat["tier"],
                use_tools=seat["use_tools"],
                max_tool_calls=seat["max_tool_calls"],
            )
        )
    return panel, seats


@transaction.atomic
def save_as_panel(imported: Imported, owner, slug: str) -> Panel:
    """All or nothing: a panel is only created when every model resolved, and only
    while the owner keeps fewer panels than they may (quotas.OverQuota)."""
    if owner is not None:
        quotas.check_panels(owner)
    panel, seats = build(imported, owner, slug)
    panel.save()
    for seat in seats:
        seat.panel = panel
        seat.save()
    return panel


def snapshot(imported: Imported) -> dict:
    """The run configuration of a recipe used once, with nothing saved: an ad-hoc
    panel (the API's `fusion.panel`)."""
    panel, seats = build(imported)
    return panel.snapshot(seats)

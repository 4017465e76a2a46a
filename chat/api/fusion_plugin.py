"""OpenRouter Fusion's request shape: the `openrouter/fusion` alias, the `fusion`
plugin, and our own `fusion.panel` extension, so a caller of the hosted service can
point its base URL here and keep its code (docs/OPENROUTER_FUSION.md).

Two steps, as for the rest of a request: `read` checks the shape of the body (no
database; a refusal names the field), and `answerer` finds what answers it for one
user: a saved panel, or an ad-hoc panel built for this request alone, frozen as a
run configuration and never saved as a Panel row.
"""

from dataclasses import dataclass

from django.conf import settings

from panels import bounds, recipes
from panels.models import CatalogModel, Panel, Seat

from . import catalog_ids
from .errors import BadRequest, error

ALIAS = "openrouter/fusion"  # the hosted service's name for the default panel
DEFAULT = "fusion"
MAX_ANALYSIS_MODELS = 8  # as the hosted service allows; a recipe's MAX_SEATS too
ADHOC_NAME = "Fusion plugin"
_PLUGIN_FIELDS = {
    "id",
    "analysis_models",
    "model",
    "max_tool_calls",
    "temperature",
    "max_completion_tokens",
    "reasoning",
}


@dataclass(frozen=True)
class FusionPlugin:
    """`plugins: [{"id": "fusion", ...}]`, its shape checked."""

    where: str  # "plugins[0]": where it sat in the request, for refusals
    analysis_models: tuple[str, ...] = ()  # empty: the base panel's seats
    judge: str = ""  # the plugin's `model`; empty: the outer model or the base panel's
    max_tool_calls: int | None = None
    temperature: float | None = None  # the seats' only; the judge runs at 0
    max_completion_tokens: int | None = None  # each seat's


@dataclass(frozen=True)
class InlineRecipe:
    """`fusion: {"panel": {…recipe…}}`, validated as a recipe (docs/RECIPES.md)."""

    data: dict


AdHoc = FusionPlugin | InlineRecipe


class ModelNotFound(BadRequest):
    """The outer `model` names nothing this key may use: 404, as for any model."""

    def response(self):
        return error(404, self.message, param="model", code="model_not_found")


# --- reading the request -------------------------------------------------------------


def read(data: dict) -> AdHoc | None:
    """The ad-hoc panel a request body asks for, its shape checked, or None."""
    plugin = _plugin(data.get("plugins"))
    extension = data.get("fusion") or {}
    recipe = extension.get("panel") if isinstance(extension, dict) else None
    if recipe is None:
        return plugin
    if plugin is not None:
        raise BadRequest(
            "Give the panel either as the `fusion` plugin or as `fusion.panel`, not both.",
            "fusion.panel",
        )
    try:
        return InlineRecipe(recipes.validate(recipe))
    except recipes.RecipeError as bad:
        where = "fusion.panel" if bad.where == "recipe" else f"fusion.panel.{bad.where}"
        raise BadRequest(f"`{where}` {str(bad).removeprefix(bad.where + ': ')}.", where) from None


def _plugin(plugins) -> FusionPlugin | None:
    if plugins is None:
        return None
    if not isinstance(plugins, list):
        raise BadRequest("`plugins` must be a list of plugin objects.", "plugins")
    found = None
    for i, item in enumerate(plugins):
        where = f"plugins[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"`{where}` must be an object with an `id`.", where)
        if item.get("id") != "fusion":
            raise BadRequest(
                f"Unknown plugin {item.get('id')!r}: this server offers only the `fusion` plugin.",
                f"{where}.id",
            )
        if found is not None:
            raise BadRequest("The `fusion` plugin is given twice; give it once.", where)
        found = _fusion(item, where)
    return found


def _fusion(item: dict, where: str) -> FusionPlugin:
    if unknown := sorted(set(item) - _PLUGIN_FIELDS):
        raise BadRequest(
            f"`{unknown[0]}` is not a field of the fusion plugin.", f"{where}.{unknown[0]}"
        )
    if "reasoning" in item:
        # Sent on, it would be silently dropped: the panels' calls carry no
        # reasoning settings yet. Better a refusal the caller can act on.
        raise BadRequest(
            "`reasoning` is not supported here: the panel's models run with their own "
            "defaults. Remove it from the plugin.",
            f"{where}.reasoning",
        )
    models = item.get("analysis_models")
    param = f"{where}.analysis_models"
    if models is not None and (
        not isinstance(models, list) or not 1 <= len(models) <= MAX_ANALYSIS_MODELS
    ):
        count = f"; it has {len(models)}" if isinstance(models, list) else ""
        raise BadRequest(
            f"`analysis_models` must list 1 to {MAX_ANALYSIS_MODELS} model ids{count}.", param
        )
    for j, model_id in enumerate(models or []):
        if not isinstance(model_id, str) or not model_id.strip():
            raise BadRequest("Each analysis model must be a model id.", f"{param}[{j}]")
    judge = item.get("model", "")
    if not isinstance(judge, str):
        raise BadRequest("`model` (the judge) must be a model id.", f"{where}.model")
    return FusionPlugin(
        where=where,
        analysis_models=tuple(m.strip() for m in models or ()),
        judge=judge.strip(),
        max_tool_calls=_number(item, "max_tool_calls", where, bounds.SEAT["max_tool_calls"]()),
        temperature=_number(item, "temperature", where, bounds.temperature()),
        max_completion_tokens=_number(item, "max_completion_tokens", where, bounds.max_tokens()),
    )


def plugin_fields(item: dict, where: str) -> FusionPlugin:
    """The plugin's fields where else they are given (the `openrouter:fusion` server
    tool's `parameters`, chat/api/server_tools.py), checked the same way."""
    return _fusion(item, where)


def _number(item: dict, key: str, where: str, bound: bounds.Bound):
    value = item.get(key)
    if value is not None and not bound.allows(value):
        raise BadRequest(f"`{key}` must be {bound.span}.", f"{where}.{key}")
    return value


# --- finding what answers --------------------------------------------------------------


def answerer(model: str, adhoc: AdHoc | None, user) -> Panel | dict | None:
    """What answers a request written for OpenRouter's Fusion: an ad-hoc panel's run
    configuration (the plugin, or `fusion.panel`), the default panel for
    `openrouter/fusion`, or None when the request is none of these (its `model`
    is then resolved as usual). Raises BadRequest naming the field, or
    ModelNotFound for an outer model this key cannot use."""
    if isinstance(adhoc, InlineRecipe):
        if model not in (DEFAULT, ALIAS):
            raise BadRequest(
                f'`fusion.panel` is the panel: send `"model": "{DEFAULT}"` with it.', "model"
            )
        return _from_recipe(adhoc.data, user)
    if isinstance(adhoc, FusionPlugin):
        return _from_plugin(adhoc, model, user)
    if model == ALIAS:
        return _panel(DEFAULT, user)
    return None


def _panel(model: str, user) -> Panel | None:
    """The saved panel a fusion model name means: `fusion` and the alias are the
    default panel (API_DEFAULT_PANEL), `fusion/<slug>` that panel."""
    if model in (DEFAULT, ALIAS):
        slug = settings.API_DEFAULT_PANEL
    elif model.startswith(f"{DEFAULT}/"):
        slug = model.removeprefix(f"{DEFAULT}/")
    else:
        return None
    return Panel.objects.reachable_by(user).filter(slug=slug).first()


def find_model(model_id: str, user) -> CatalogModel | None:
    """A catalog model this user may call, by an id GET /v1/models lists for it
    (its `model_id`, or `<provider>/<model_id>`): the same ids as `model` takes."""
    from .answerers import is_panel_id

    return catalog_ids.find(model_id, user, is_panel_id)


def _usable(model_id: str, user, param: str) -> CatalogModel:
    found = find_model(model_id, user)
    if found is None:
        raise BadRequest(
            f"`{model_id}` is not a model you can use here: no provider you may call "
            "serves it. GET /v1/models lists yours; a model of your own provider is "
            "named by its id or `<provider name>/<model id>`.",
            param,
        )
    return found


def _from_plugin(plugin: FusionPlugin, model: str, user, outer: CatalogModel | None = None) -> dict:
    """The ad-hoc panel's run configuration. `model` is the request's: a panel name
    (its panel lends seats, judge, tools and deadline) or a catalog model (the judge);
    `outer`, when the caller has already found that model."""
    named_panel = model in (DEFAULT, ALIAS) or model.startswith(f"{DEFAULT}/")
    if outer is None and not named_panel:
        outer = find_model(model, user)  # a catalog model: the judge
    base = _panel(model, user) if outer is None else _panel(DEFAULT, user)
    if outer is None and model not in (DEFAULT, ALIAS) and base is None:
        raise ModelNotFound(
            f"The model `{model}` does not exist or you do not have access to it. "
            "GET /v1/models lists yours."
        )
    if plugin.judge:
        judge = _usable(plugin.judge, user, f"{plugin.where}.model")
    elif outer is not None:
        judge = outer
    elif base is not None and base.judge is not None:
        judge = base.judge
    else:
        raise BadRequest(
            f"Name the judge in `{plugin.where}.model`: the default panel "
            f"`{settings.API_DEFAULT_PANEL}` is not available here to lend its judge.",
            f"{plugin.where}.model",
        )
    param = f"{plugin.where}.analysis_models"
    models = [_usable(m, user, f"{param}[{j}]") for j, m in enumerate(plugin.analysis_models)]
    if models:
        seats = [Seat(position=i, model=m) for i, m in enumerate(models)]
    elif base is not None:
        seats = list(base.seats.select_related("model__provider"))
    else:
        raise BadRequest(
            f"List the panel in `{param}`: the default panel "
            f"`{settings.API_DEFAULT_PANEL}` is not available here.",
            param,
        )
    for seat in seats:  # in memory only: an ad-hoc panel saves nothing
        if plugin.temperature is not None:
            seat.temperature = plugin.temperature
        if plugin.max_tool_calls is not None:
            seat.max_tool_calls = plugin.max_tool_calls
        if plugin.max_completion_tokens is not None:
            seat.max_tokens = plugin.max_completion_tokens
    # The judge writes the final answer too (no synthesizer), as the hosted service's
    # does; time and tools are the base panel's, or the defaults (no tools).
    panel = Panel(name=ADHOC_NAME, judge=judge)
    if base is not None:
        panel.deadline_s, panel.tools = base.deadline_s, list(base.tools)
        panel.judge_tools, panel.excluded_domains = base.judge_tools, list(base.excluded_domains)
    return panel.snapshot(seats)


def panel_for_tool(plugin: FusionPlugin, caller: CatalogModel, user) -> dict:
    """The panel the fusion server tool convenes for the model `caller`: as the
    plugin's, the calling model the judge unless the parameters name one."""
    return _from_plugin(plugin, caller.model_id, user, outer=caller)


def panel_for_mcp(plugin: FusionPlugin, panel: str | None, user) -> dict:
    """The ad-hoc panel the MCP `fusion` tool asks (`analysis_models`, `model`): the
    panel named `panel` (a slug), or else the default panel, lends what the
    arguments leave out (seats, judge, tools, deadline)."""
    return _from_plugin(plugin, f"{DEFAULT}/{panel}" if panel else DEFAULT, user)


def alias_model(user) -> CatalogModel:
    """The model `openrouter/fusion` stands for when it is read as OpenRouter's
    hosted service reads it (server_tools.alias): API_FUSION_ALIAS_MODEL, or the
    default panel's judge. Raises BadRequest naming `model` when this user cannot
    use it, or the default panel is not there to lend its judge."""
    named = settings.API_FUSION_ALIAS_MODEL
    if named:
        found = find_model(named, user)
        if found is None:
            raise BadRequest(
                f"`{ALIAS}` stands for the model `{named}` here (the site's "
                "API_FUSION_ALIAS_MODEL), which you cannot use. Name a model of GET "
                f'/v1/models with `tools: [{{"type": "openrouter:fusion"}}]` instead.',
                "model",
            )
        return found
    base = _panel(DEFAULT, user)
    if base is None or base.judge is None:
        raise BadRequest(
            f"`{ALIAS}` stands for the default panel's judge here, and the default panel "
            f"`{settings.API_DEFAULT_PANEL}` is not available to lend one. Name a model of "
            'GET /v1/models with `tools: [{"type": "openrouter:fusion"}]` instead.',
            "model",
        )
    return base.judge


def _from_recipe(data: dict, user) -> dict:
    imported = recipes.resolve(data, user)
    if imported.missing:
        raise BadRequest(
            "Models you cannot use here: " + "; ".join(imported.missing) + ". "
            "GET /v1/models lists yours.",
            "fusion.panel",
        )
    return recipes.snapshot(imported)

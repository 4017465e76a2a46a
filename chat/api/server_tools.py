"""Server tools in a request's `tools`: tools this server runs for the model, in its
own tool loop, beside the caller's function tools (chat/api/tools.py), which go back
to the caller. OpenRouter's names (`openrouter:fusion`, `openrouter:web_search`,
`openrouter:web_fetch`) and ours (`fusion`, `web_search`, `web_fetch`, `run_python`),
as `{"type": "<name>", "parameters": {...}}` (docs/OPENROUTER_FUSION.md).

Two steps, as for the fusion plugin: `read` checks the shape (no database), and
`configuration` resolves the fusion tool's panel for one user and model, so a bad
model is refused before anything runs. The run keeps the result as `server_tools`:
{"names", "max_tool_calls", "tool_choice", "panel"} (chat/engine/fusion_tool.py).
"""

from dataclasses import dataclass, replace

from django.conf import settings

from panels import bounds
from panels.models import CatalogModel

from . import fusion_plugin
from .errors import BadRequest

# The name a request may give → the engine's tool.
NAMES = {
    "openrouter:fusion": "fusion",
    "openrouter:web_search": "web_search",
    "openrouter:web_fetch": "web_fetch",
    "fusion": "fusion",
    "web_search": "web_search",
    "web_fetch": "web_fetch",
    "run_python": "run_python",
}
DEFAULT_MAX_TOOL_CALLS = 8  # as OpenRouter's fusion tool
# How a request says what `openrouter/fusion` means (settings.API_FUSION_ALIAS):
# "panel", the default panel; "tool", one model with the fusion tool attached.
ALIAS_HEADER = "X-Fusion-Alias"
ALIAS_MODES = ("panel", "tool")


@dataclass(frozen=True)
class ServerTools:
    """The server tools a request asked for, their shape checked."""

    names: tuple[str, ...]  # the engine's names, in the request's order
    where: dict[str, str]  # name → "tools[i]", for refusals
    fusion: fusion_plugin.FusionPlugin | None = None  # the fusion tool's parameters
    tool_choice: str | dict | None = None  # "required", or the tool named

    @property
    def max_tool_calls(self) -> int:
        chosen = self.fusion.max_tool_calls if self.fusion else None
        return chosen or DEFAULT_MAX_TOOL_CALLS


def is_server_tool(tool) -> bool:
    return isinstance(tool, dict) and tool.get("type") in NAMES


def read(raw: list) -> ServerTools | None:
    """The server tools among `raw` (the request's `tools`), or None."""
    names: list[str] = []
    where: dict[str, str] = {}
    fusion = None
    for i, tool in enumerate(raw):
        if not is_server_tool(tool):
            continue
        name, param = NAMES[tool["type"]], f"tools[{i}]"
        if name in names:
            raise BadRequest(f"The server tool `{tool['type']}` is given twice.", f"{param}.type")
        if unknown := sorted(set(tool) - {"type", "parameters"}):
            raise BadRequest(f"`{unknown[0]}` is not a field of a server tool.", param)
        parameters = tool.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest("`parameters` must be an object.", f"{param}.parameters")
        if name == "fusion":
            fusion = fusion_plugin.plugin_fields(parameters, f"{param}.parameters")
        elif parameters:
            _max_calls_only(parameters, f"{param}.parameters")
        names.append(name)
        where[name] = param
    return ServerTools(tuple(names), where, fusion) if names else None


def _max_calls_only(parameters: dict, where: str) -> None:
    if unknown := sorted(set(parameters) - {"max_tool_calls"}):
        where = f"{where}.{unknown[0]}"
        raise BadRequest(f"`{unknown[0]}` is not a parameter of this tool.", where)
    bound = bounds.SEAT["max_tool_calls"]()
    if not bound.allows(parameters["max_tool_calls"]):
        raise BadRequest(f"`max_tool_calls` must be {bound.span}.", f"{where}.max_tool_calls")


def choice(value, server: ServerTools | None) -> str | dict | None:
    """A `tool_choice` that names a server tool ({"type": "openrouter:fusion"}, or a
    function choice by a server tool's name), as the engine's function choice; None
    when it names none."""
    if server is None or not isinstance(value, dict):
        return None
    named = value.get("function") if value.get("type") == "function" else None
    raw = named.get("name") if isinstance(named, dict) else value.get("type")
    name = NAMES.get(raw) if isinstance(raw, str) else None
    if name is None or name not in server.names:
        return None
    return {"type": "function", "function": {"name": name}}


def configuration(server: ServerTools, answerer, user) -> dict:
    """The run's `server_tools`, the fusion tool's panel resolved for this user.
    Raises BadRequest naming the field: server tools need one model that can call
    tools, and every model the fusion tool names must be one the key may use."""
    first = server.where[server.names[0]]
    if not isinstance(answerer, CatalogModel):
        raise BadRequest(
            "Server tools are offered to one model, which decides when to call them: "
            "name a model, not a panel (a panel's seats get its own tools).",
            first,
        )
    if not answerer.supports_tools:
        raise BadRequest(
            f"{answerer.display_name} cannot call tools (its catalog entry has no tool "
            "support), so it could not call server tools. Choose a model that supports tools.",
            first,
        )
    panel = None
    if server.fusion is not None:
        panel = fusion_plugin.panel_for_tool(server.fusion, answerer, user)
    return {
        "server_tools": {
            "names": list(server.names),
            "max_tool_calls": server.max_tool_calls,
            "tool_choice": server.tool_choice,
            "panel": panel,
        }
    }


# --- `openrouter/fusion` as OpenRouter's hosted service means it ------------------------


def alias_mode(header: str | None) -> str:
    """What `openrouter/fusion` means for this request: its X-Fusion-Alias header
    ("panel" or "tool"), else the site's API_FUSION_ALIAS. A header with any other
    value is refused, whatever the model, rather than read as the default."""
    if header is None or not header.strip():
        return settings.API_FUSION_ALIAS
    mode = header.strip().lower()
    if mode not in ALIAS_MODES:
        raise BadRequest(
            f"{ALIAS_HEADER} must be `tool` (`openrouter/fusion` is one model that may call "
            "the fusion tool, as on OpenRouter) or `panel` (the default panel, judge and "
            f"synthesis); it is {header.strip()[:40]!r}.",
            ALIAS_HEADER,
        )
    return mode


def alias(
    server: ServerTools | None, adhoc: fusion_plugin.AdHoc | None, user
) -> tuple[CatalogModel, ServerTools]:
    """`openrouter/fusion` read as the hosted service reads it: the alias's model
    (fusion_plugin.alias_model) with the `openrouter:fusion` tool attached. The
    `fusion` plugin's fields, when given, are the tool's parameters, as there; a
    fusion tool the request lists itself is the attached one. Raises BadRequest
    naming the field."""
    if isinstance(adhoc, fusion_plugin.InlineRecipe):
        raise BadRequest(
            f"With {ALIAS_HEADER}: tool, `{fusion_plugin.ALIAS}` is one model that calls the "
            "fusion tool: give its panel as the `fusion` plugin or the tool's `parameters`, "
            f'or send `"model": "{fusion_plugin.DEFAULT}"` with `fusion.panel`.',
            "fusion.panel",
        )
    model = fusion_plugin.alias_model(user)
    if server is not None and server.fusion is not None:
        if adhoc is not None:
            raise BadRequest(
                "The fusion tool's parameters are given twice: as the `fusion` plugin and "
                f"in `{server.where['fusion']}`. Give them once.",
                adhoc.where,
            )
        return model, server
    # The attached tool is the alias's: a refusal of it (a model that cannot call
    # tools) names `model`.
    plugin = adhoc or fusion_plugin.FusionPlugin(where="model")
    if server is None:
        return model, ServerTools(("fusion",), {"fusion": "model"}, plugin)
    names, where = ("fusion", *server.names), {"fusion": "model", **server.where}
    return model, replace(server, names=names, where=where, fusion=plugin)

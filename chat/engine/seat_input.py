"""What each seat of a run is sent: its system prompt and notes, then the
conversation (the conversation's earlier turns, or an API caller's whole `messages`) fitted
to its model's window, and the caller's tools and response format.

seats.py builds every seat's call from it, and admission.py sizes and prices the same
input before the run is admitted: what a run sends is what it was priced at.
"""

import json

from django.conf import settings

from panels.providers import ChatMessage

from . import client_tools, json_modes
from .context import fit_given_messages, fit_messages
from .tools import registry


def final_choices(config: dict) -> dict:
    """What an API caller chose for the call that writes the final answer (kept as
    `synthesizer_*` in the run's configuration): its ChatRequest fields, or {}."""
    chosen = {
        "max_tokens": config.get("synthesizer_max_tokens"),
        "temperature": config.get("synthesizer_temperature"),
        "stop": tuple(config.get("synthesizer_stop") or ()),
        "seed": config.get("synthesizer_seed"),
    }
    return {name: value for name, value in chosen.items() if value not in (None, ())}


def is_solo(config: dict) -> bool:
    """No judge: a seat's answer may reach the caller as written."""
    return not config.get("judge")


def seat_choices(config: dict) -> dict:
    """A single model's one seat writes the final answer itself: the caller's choices
    for the final answer are its own."""
    alone = len(config["seats"]) == 1 and is_solo(config)
    return final_choices(config) if alone else {}


def seat_max_tokens(config: dict, seat: dict) -> int:
    chosen = seat_choices(config)
    return chosen.get("max_tokens") or seat.get("max_tokens") or settings.DEFAULT_MAX_TOKENS


def seat_system(config: dict, seat: dict, system_note: str = "") -> str | None:
    """The seat's system prompt, with what an API caller asked for: a seat's answer
    may reach it as written (a single model, or a strategy returning a seat's
    answer), so it is in the caller's format; a panel's seats read the caller's tools
    (one model alone is sent them as tools)."""
    notes = [seat.get("system_prompt"), system_note]
    notes += ["" if is_solo(config) else client_tools.seat_note(config)]
    notes += [json_modes.instruction(config.get("response_format"))]
    return "\n\n".join(p for p in notes if p) or None


def seat_messages(
    config: dict,
    seat: dict,
    question: str,
    turns: list[tuple[str, str]] | None,
    context_length: int,
    system_note: str = "",
    part: str | None = None,
) -> tuple[ChatMessage, ...]:
    """The messages one seat is sent. `turns` are the conversation's earlier turns (newest
    first), or None when an API caller sent the whole conversation; `part` replaces
    the question (a router's sub-question)."""
    max_tokens = seat_max_tokens(config, seat)
    system = seat_system(config, seat, system_note)
    if turns is None:
        given = list(config["conversation"])
        if part:
            given[-1] = {**given[-1], "content": part}
        return fit_given_messages(given, context_length, max_tokens, system)
    return fit_messages(part or question, turns, context_length, max_tokens, system)


def sent_outside_messages(config: dict, seat: dict) -> int:
    """Characters a seat is sent beside its messages: a single model's tools, and
    the response format its server is given (the schema, JSON)."""
    size = 0
    if is_solo(config) and (tools := client_tools.request_options(config).get("tools")):
        size += len(json.dumps(list(tools)))
    if fmt := json_modes.for_server(config.get("response_format"), seat.get("model") or {}):
        size += len(json.dumps(fmt))
    return size


def server_tools_of(config: dict) -> dict | None:
    """The tools the server runs for one model alone (an API request's server tools:
    {"names", "max_tool_calls", "tool_choice", "panel"}), or None; none when the
    caller said `tool_choice: "none"`."""
    server = config.get("server_tools")
    if not is_solo(config) or not server or not server.get("names"):
        return None
    return None if server.get("tool_choice") == "none" else server


def seat_tool_names(config: dict, seat: dict) -> list[str]:
    """The panel's tools this seat may call: none when the seat does not use tools or
    its model cannot call them (it is never sent any), nor when one model alone
    answers with an API caller's tools (its calls are the caller's)."""
    names = [n for n in config.get("tools", []) if n in registry.PANEL_TOOLS]
    model = seat.get("model") or {}
    if client_tools.of(config) and not config.get("judge"):
        return []
    if not names or not seat.get("use_tools", True) or not model.get("supports_tools"):
        return []
    return names


def seat_tool_calls(seat: dict) -> int:
    """How many tool calls the seat may make in one answer."""
    return max(1, min(16, int(seat.get("max_tool_calls") or 8)))

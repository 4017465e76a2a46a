"""A caller's own tools (the API's `tools`): the panel answers with them in view, and
the answer the caller gets may call them.

The caller runs its tools, never this server. Seats of a panel read the tools'
definitions in their prompt and may propose calls in their text; the one call that
writes the answer the caller gets (the synthesizer, or a single model alone) is sent
the tools for real, and its tool calls go back to the caller in OpenAI's shape
(Answer.client_tool_calls). The results come back in the caller's next request, as
part of that turn's question (chat/api/tools.py), so every seat, the judge
and the synthesizer read them.

A run's frozen configuration carries them as `client_tools`: {"tools": [...],
"tool_choice": ..., "parallel_tool_calls": ...}, in OpenAI's shapes.
"""

import json
import secrets

from chat.models import Answer, Run
from panels.providers import ToolCall

# Strategies whose final answer is always written by a synthesizer call, which can be
# sent the tools. Vote, gate and route may return a seat's answer as written.
SYNTHESIZING_STRATEGIES = ("fusion", "escalate")


def of(config: dict) -> dict | None:
    """The caller's tools of this run, when it may call them (tool_choice "none"
    offers none)."""
    client = config.get("client_tools")
    if not client or not client.get("tools") or client.get("tool_choice") == "none":
        return None
    return client


def unsupported(config: dict) -> str | None:
    """Why the answerer of `config` (a panel's snapshot, or one model's) cannot
    honour the caller's tools, in words; None when it can."""
    if not config.get("judge"):  # one model answers alone: its own call writes the answer
        refs = [seat.get("model") for seat in config.get("seats", [])]
        for ref in refs:
            if ref and not ref.get("supports_tools"):
                return (
                    f"{ref['name']} cannot call tools (its catalog entry has no tool "
                    "support), so it could not answer with your tool calls. Choose a model "
                    "that supports tools, or leave `tools` out."
                )
        return None
    panel = (config.get("panel") or {}).get("slug", "this panel")
    strategy = (config.get("strategy") or {}).get("name", "fusion")
    if strategy not in SYNTHESIZING_STRATEGIES:
        return (
            f"The panel `{panel}` answers by {strategy}: its answer may be a seat's answer as "
            "written, and seats cannot call your tools. Use a panel with the fusion or "
            "escalate strategy, or one model alone, or leave `tools` out."
        )
    for role in ("synthesizer", "synthesizer_fallback"):
        ref = config.get(role)
        if ref and not ref.get("supports_tools"):
            who = "fallback synthesizer" if role == "synthesizer_fallback" else "synthesizer"
            return (
                f"The {who} of the panel `{panel}`, {ref['name']}, cannot call tools (its "
                "catalog entry has no tool support), so the panel could not answer with your "
                "tool calls. Use a panel whose synthesizer supports tools, or leave `tools` out."
            )
    return None


def request_options(config: dict) -> dict:
    """The ChatRequest fields for the call that writes the caller's answer."""
    client = of(config)
    if client is None:
        return {}
    return {
        "tools": tuple(client["tools"]),
        "tool_choice": client.get("tool_choice"),
        "parallel_tool_calls": client.get("parallel_tool_calls"),
    }


def _listed(tools: list[dict]) -> str:
    lines = []
    for tool in tools:
        function = tool["function"]
        parameters = json.dumps(function.get("parameters") or {}, separators=(",", ":"))
        description = function.get("description") or ""
        lines.append(f"- {function['name']}: {description} Parameters (JSON Schema): {parameters}")
    return "\n".join(lines)


def seat_note(config: dict) -> str:
    """What a panel's seat is told of the caller's tools: what they do, and that it
    may propose a call, which the synthesizer may then make."""
    client = of(config)
    if client is None:
        return ""
    choice = client.get("tool_choice")
    must = ""
    if choice == "required":
        must = " The final answer must call at least one of these tools."
    elif isinstance(choice, dict):
        must = f" The final answer must call the tool {choice['function']['name']}."
    return (
        "The user's application offers the tools below, and runs them itself: you cannot "
        "call them here. If one would help answer, say which call you would make (the "
        "tool's name and its JSON arguments) and why; otherwise answer directly. When the "
        f"question already gives a tool's results, use them.{must}\n{_listed(client['tools'])}"
    )


def synthesizer_note(config: dict) -> str:
    """What the synthesizer is told when it is sent the caller's tools."""
    if of(config) is None:
        return ""
    return (
        "You may call the tools offered to you: the user's application runs them and sends "
        "their results back. Call one when the answer needs what only that tool can give "
        "(the drafts may propose calls); when the question already gives a tool's results, "
        "answer with them instead of calling it again."
    )


def as_stored(calls: list[ToolCall]) -> list[dict]:
    """Tool calls as kept on the answer and returned to the caller; a server that
    gave a call no id (llama.cpp may not) gets one, since the caller must answer it."""
    return [
        {
            "id": call.id or f"call_{secrets.token_hex(12)}",
            "name": call.name,
            "arguments": call.arguments or "{}",
        }
        for call in calls
    ]


def required_call(config: dict) -> str | None:
    """What the caller's tool_choice demands of the answer, in words: "one of your
    tools" (`required`), "your tool <name>" (a named function); None when nothing."""
    client = of(config)
    choice = client.get("tool_choice") if client else None
    if choice == "required":
        return "one of your tools"
    if isinstance(choice, dict):
        return f"your tool {choice['function']['name']}"
    return None


def unmet(config: dict, answer: Answer) -> bool:
    """True when a finished answer wrote text where the caller's tool_choice demanded
    a call (a server may ignore tool_choice: llama.cpp, a proxy, a model's habit)."""
    if answer.status != Answer.Status.DONE or required_call(config) is None:
        return False
    choice = config["client_tools"]["tool_choice"]
    names = {call["name"] for call in answer.client_tool_calls}
    return not names if choice == "required" else choice["function"]["name"] not in names


def insistence(config: dict) -> str:
    """Told to the synthesizer when its answer ignored tool_choice: one more try."""
    return (
        f"Your reply must call {required_call(config)}; the application asked for a tool "
        "call, not a text answer. Call it now, with the arguments the question needs."
    )


def checked(run: Run, status: str, reason: str, detail: str) -> tuple[str, str, str]:
    """A finished run held to the caller's tool_choice (in the run's database thread):
    a final answer of text where a call was demanded fails the run, saying so. Takes
    and returns (status, failure reason, detail)."""
    final = run.final_answer
    if status != Run.Status.DONE or final is None or not unmet(run.config, final):
        return status, reason, detail
    words = (
        f"The final answer, by {final.model_name}, wrote text where tool_choice demanded a "
        f"call of {required_call(run.config)}, even when asked again. Try again, use a model "
        'that follows tool_choice, or send tool_choice "auto".'
    )
    return Run.Status.FAILED, Run.Failure.TOOL_CHOICE_UNMET, words

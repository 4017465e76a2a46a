"""A caller's own tools through the API. Reading them: `tools`, `tool_choice`,
`parallel_tool_calls`, and the tool turns of the messages (an assistant message's
`tool_calls`, the `tool` messages that answer them), in OpenAI's shapes, errors
naming the field. Answering with them: the final answer's tool calls in OpenAI's
message and stream shapes.

The panel reads a conversation as text (chat/engine/context.py), so tool turns are
written out in words: earlier rounds become turns of their own, and the calls and
results after the last user message become part of this turn's question, which every
seat, the judge and the synthesizer read (chat/engine/client_tools.py).
"""

import dataclasses
import re

from chat.engine import json_modes

from . import server_tools
from .errors import BadRequest

MAX_TOOLS = 128  # OpenAI's limit
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHOICES = ("none", "auto", "required")


def _function_name(value, param: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise BadRequest(
            f"`{param}` must be 1 to 64 letters, digits, underscores or dashes.", param
        )
    return value


def _tool(tool, param: str, deadline: float) -> dict:
    if not isinstance(tool, dict):
        raise BadRequest("Each tool must be an object.", param)
    if tool.get("type") != "function":
        raise BadRequest("Only tools of type `function` are supported.", f"{param}.type")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise BadRequest("A function tool needs a `function` object.", f"{param}.function")
    clean: dict = {"name": _function_name(function.get("name"), f"{param}.function.name")}
    description = function.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise BadRequest("`description` must be a string.", f"{param}.function.description")
        clean["description"] = description
    if "parameters" in function:
        where = f"{param}.function.parameters"
        if problem := json_modes.schema_problem(function["parameters"], deadline):
            raise BadRequest(f"`{where}` is not a valid JSON Schema: {problem}.", where)
        clean["parameters"] = function["parameters"]
    strict = function.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise BadRequest("`strict` must be true or false.", f"{param}.function.strict")
        clean["strict"] = strict
    return {"type": "function", "function": clean}


def read(
    data: dict, deadline: float
) -> tuple[list[dict], str | dict | None, bool | None, server_tools.ServerTools | None]:
    """(tools, tool_choice, parallel_tool_calls, server tools) of a request, checked;
    their schemas by `deadline` (time.monotonic()), the request's for all its schemas.
    A tool_choice naming a server tool, or "required" with server tools only, is the
    server tools' (server_tools.ServerTools.tool_choice)."""
    for legacy in ("functions", "function_call"):
        if data.get(legacy) is not None:
            raise BadRequest(
                f"`{legacy}` is OpenAI's deprecated form: send `tools` and `tool_choice`.",
                legacy,
            )
    raw = data.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BadRequest("`tools` must be a list of function tools.", "tools")
    if len(raw) > MAX_TOOLS:
        raise BadRequest(f"`tools` may hold at most {MAX_TOOLS} tools.", "tools")
    server = server_tools.read(raw)
    tools = [
        _tool(tool, f"tools[{i}]", deadline)
        for i, tool in enumerate(raw)
        if not server_tools.is_server_tool(tool)
    ]
    names = [t["function"]["name"] for t in tools]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise BadRequest(f"Two tools are named `{name}`.", f"tools[{i}].function.name")
    choice = _choice(data.get("tool_choice"), names, server)
    names_callers = isinstance(choice, dict) and choice["function"]["name"] in names
    if server is not None and choice is not None and not tools and not names_callers:
        # With no tool of the caller's, the choice is the server tools' ("required", or
        # one named): the server's loop honours it on the model's first call.
        server = dataclasses.replace(server, tool_choice=choice)
        choice = None
    elif server is not None and isinstance(choice, dict) and not names_callers:
        server = dataclasses.replace(server, tool_choice=choice)  # a server tool, named
        choice = None
    parallel = data.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadRequest("`parallel_tool_calls` must be true or false.", "parallel_tool_calls")
    return tools, choice, parallel, server


def _choice(choice, names: list[str], server: server_tools.ServerTools | None):
    if choice is None:
        return None
    if not names and server is None:
        raise BadRequest("`tool_choice` is only allowed when `tools` are given.", "tool_choice")
    if (named_server := server_tools.choice(choice, server)) is not None:
        return named_server
    named = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and (
        choice.get("type") != "function"
        or not isinstance(named, dict)
        or named.get("name") not in names
    ):
        raise BadRequest(
            '`tool_choice` must name one of the tools: {"type": "function", '
            '"function": {"name": ...}}, or a server tool: {"type": "openrouter:fusion"}.',
            "tool_choice",
        )
    if isinstance(choice, dict) and isinstance(named, dict):
        return {"type": "function", "function": {"name": named["name"]}}
    if choice not in CHOICES:
        raise BadRequest(
            "`tool_choice` must be none, auto, required, or a named function.", "tool_choice"
        )
    return choice


def turn_fields(message: dict, role: str, param: str) -> dict:
    """The tool fields of one message: an assistant's `tool_calls`, a tool message's
    `tool_call_id`; {} for any other message."""
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest("A tool message needs its `tool_call_id`.", f"{param}.tool_call_id")
        return {"tool_call_id": call_id}
    raw = message.get("tool_calls")
    if role != "assistant" or raw is None:
        return {}
    if not isinstance(raw, list) or not raw:
        raise BadRequest("`tool_calls` must be a non-empty list.", f"{param}.tool_calls")
    calls = []
    for i, call in enumerate(raw):
        where = f"{param}.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("id"), str)
            or not call["id"]
            or call.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments", ""), str)
        ):
            raise BadRequest(
                'Each tool call must be {"id", "type": "function", "function": {"name", '
                '"arguments"}}, its arguments a JSON string.',
                where,
            )
        calls.append(
            {"id": call["id"], "name": function["name"], "arguments": function.get("arguments")}
        )
    return {"tool_calls": calls}


def _called(call: dict) -> str:
    return f"{call['name']}({call['arguments'] or '{}'})"


def _check_answers(turns: list[dict]) -> None:
    """Every tool message answers a call of the assistant message just before it
    (other tool messages between), and every call is answered, as OpenAI requires."""
    pending: dict[str, dict] = {}
    caller = -1
    for i, turn in enumerate(turns):
        if turn["role"] == "tool":
            if turn["tool_call_id"] not in pending:
                raise BadRequest(
                    f"This tool message answers `{turn['tool_call_id']}`, which is no "
                    "unanswered call of the assistant message before it.",
                    f"messages[{i}].tool_call_id",
                )
            del pending[turn["tool_call_id"]]
            continue
        if pending:
            break
        pending = {call["id"]: call for call in turn.get("tool_calls", [])}
        caller = i
    if pending:
        missing = ", ".join(pending)
        raise BadRequest(
            f"The assistant message called tools whose results are missing: {missing}. "
            "Send a tool message for each call after it.",
            f"messages[{caller}].tool_calls",
        )


def as_conversation(turns: list[dict]) -> list[dict]:
    """The messages as the panel reads them ({"role", "content"}: system, user,
    assistant), tool turns written out. Raises BadRequest for unpaired tool turns."""
    _check_answers(turns)
    users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
    last_user = users[-1] if users else len(turns)
    calls: dict[str, dict] = {}
    conversation: list[dict] = []
    for turn in turns[:last_user]:
        if turn["role"] == "tool":
            result = f"- {_called(calls[turn['tool_call_id']])} returned: {turn['content']}"
            if conversation[-1]["role"] == "user":  # the results of one round, together
                conversation[-1]["content"] += "\n" + result
            else:
                conversation.append({"role": "user", "content": f"Tool results:\n{result}"})
            continue
        content = turn["content"]
        if turn.get("tool_calls"):
            calls |= {call["id"]: call for call in turn["tool_calls"]}
            listed = "\n".join(f"- {_called(call)}" for call in turn["tool_calls"])
            content = "\n\n".join(filter(None, [content, f"Called tools:\n{listed}"]))
        conversation.append({"role": turn["role"], "content": content})
    after = turns[last_user + 1 :]
    if last_user == len(turns) or (after and after[-1]["role"] != "tool"):
        # No question to answer (no user message, or an assistant's last): the caller
        # is told so by the check of the last message.
        return [*conversation, {"role": "assistant", "content": ""}]
    question = turns[last_user]["content"]
    if after:  # this turn's tool rounds: their results are part of the question
        lines = []
        for turn in after:
            if turn["role"] == "tool":
                call = calls[turn["tool_call_id"]]
                lines.append(f"- {_called(call)} returned: {turn['content']}")
                continue
            calls |= {call["id"]: call for call in turn.get("tool_calls", [])}
            if turn["content"].strip():
                lines.append(f"- The assistant wrote: {turn['content']}")
        question += "\n\nTools were called for this question, and returned:\n" + "\n".join(lines)
    return [*conversation, {"role": "user", "content": question}]


# --- the answer's tool calls, as the caller gets them -------------------------------


def openai_calls(stored: list[dict]) -> list[dict]:
    """Answer.client_tool_calls in OpenAI's message shape."""
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for call in stored
    ]


def call_deltas(calls: list[dict]) -> list[dict]:
    """A message's `tool_calls` (openai_calls) as a stream's `delta.tool_calls`, the
    way OpenAI sends them: each call opens with its index, id, type and name, then
    its arguments follow."""
    deltas = []
    for index, call in enumerate(calls):
        head = {"name": call["function"]["name"], "arguments": ""}
        deltas.append({"index": index, "id": call["id"], "type": "function", "function": head})
        deltas.append({"index": index, "function": {"arguments": call["function"]["arguments"]}})
    return deltas


def settings_of(tools: list[dict], choice, parallel) -> dict:
    """A run's `client_tools` (its frozen configuration), or nothing without tools."""
    if not tools:
        return {}
    return {
        "client_tools": {"tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}
    }

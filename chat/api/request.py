"""Reading a chat.completions request: every field checked, errors name the param."""

import json
import time
from dataclasses import dataclass, field

from django.conf import settings

from core import storable
from panels import bounds

from . import formats, fusion_plugin, sampling, tools
from .errors import BadRequest
from .server_tools import ServerTools

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass
class CompletionRequest:
    model: str
    messages: list[dict]  # {"role", "content"} with text content; tool turns in words
    stream: bool = False
    include_usage: bool = False
    progress: bool = False  # extension: panel progress chunks in the stream
    max_tokens: int | None = None
    temperature: float | None = None
    user: str = ""
    metadata: dict = field(default_factory=dict)
    # OpenRouter's fusion plugin, or our `fusion.panel` recipe (fusion_plugin.py).
    adhoc: fusion_plugin.AdHoc | None = None
    stop: tuple[str, ...] = ()  # sequences that end the final answer
    seed: int | None = None  # for the call that writes the final answer
    # The caller's own tools and JSON mode (chat/api/tools.py, formats.py).
    tools: list[dict] = field(default_factory=list)
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None
    # Tools the server runs for the model (chat/api/server_tools.py).
    server_tools: ServerTools | None = None
    server_config: dict = field(default_factory=dict)  # their run configuration, resolved

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def _text(content, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        parts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise BadRequest("Only text content parts are supported.", f"{param}[{i}]")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest("Message content must be a string or a list of text parts.", param)


def _bounded(value, param: str, bound: bounds.Bound):
    if value is not None and not bound.allows(value):
        raise BadRequest(f"`{param}` must be {bound.span}.", param)
    return value


# Deeper than any request needs (a schema may nest SCHEMA_MAX_DEPTH levels inside
# `tools`), and far from the interpreter's recursion limit, which the readers of a
# body (storable, the schema checks, json.dumps) would otherwise meet as a 500.
BODY_MAX_DEPTH = 200


def _depth_over(data, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    return False


def json_object(body: bytes) -> dict:
    """A request body as a JSON object whose text can be stored, or BadRequest."""
    too_deep = BadRequest(
        f"The request body nests deeper than {BODY_MAX_DEPTH} levels of objects and lists, "
        "the limit."
    )
    try:
        data = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    if _depth_over(data, BODY_MAX_DEPTH):
        raise too_deep
    if hit := storable.find(data, ""):
        raise BadRequest(f"`{hit[0]}` {hit[1]}.", hit[0])
    return data


def parse(body: bytes) -> CompletionRequest:
    data = json_object(body)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "`model` is required: `fusion`, `fusion/<panel>` or a model id of GET /v1/models.",
            "model",
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list.", "messages")
    clean = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest("Each message must be an object.", param)
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"Unknown role {role!r}; use system, user, assistant or tool.", f"{param}.role"
            )
        turn = tools.turn_fields(message, role, param)
        content = message.get("content")
        # An assistant message that calls tools may have no text, as in OpenAI's API.
        text = (
            "" if content is None and "tool_calls" in turn else _text(content, f"{param}.content")
        )
        clean.append({"role": "system" if role == "developer" else role, "content": text, **turn})
    clean = tools.as_conversation(clean)
    if clean[-1]["role"] != "user" or not clean[-1]["content"].strip():
        raise BadRequest(
            "The last message must be a non-empty user message (or the tool messages "
            "answering an assistant's tool calls).",
            "messages",
        )
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("`stream` must be true or false.", "stream")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("`stream_options` must be an object.", "stream_options")
    # The synthesizer's limits, within the bounds a panel's seats have.
    param = "max_completion_tokens" if "max_tokens" not in data else "max_tokens"
    max_tokens = _bounded(data.get(param), param, bounds.max_tokens())
    temperature = _bounded(data.get("temperature"), "temperature", bounds.temperature())
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("`metadata` must be an object.", "metadata")
    extension = data.get("fusion") or {}
    if not isinstance(extension, dict):
        raise BadRequest("`fusion` must be an object.", "fusion")
    stop, seed = sampling.read(data)
    # The schemas' budget before any schema work; then one deadline for all of them.
    formats.within_budget(data)
    deadline = time.monotonic() + settings.SCHEMA_CHECK_S
    client_tools, tool_choice, parallel_tool_calls, server = tools.read(data, deadline)
    return CompletionRequest(
        model=model,
        messages=clean,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        progress=bool(extension.get("progress")),
        max_tokens=max_tokens,
        temperature=temperature,
        user=str(data.get("user") or "")[:200],
        metadata=metadata,
        adhoc=fusion_plugin.read(data),
        stop=stop,
        seed=seed,
        tools=client_tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        server_tools=server,
        response_format=formats.read(data, deadline),
    )

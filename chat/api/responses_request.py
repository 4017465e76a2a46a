"""Reading a Responses API request (POST /v1/responses) as a chat.completions one.

The Responses API says what chat.completions says in other words: `input` items
for `messages`, `instructions` for a system message, `max_output_tokens` for
`max_tokens`. Those are read here, and every error names the Responses field. The
fields both APIs share (model, temperature, metadata, the `fusion` extension…) go
through chat.completions' own reader, so the two doors accept exactly the same
values and a new option there is an option here too.

What a panel cannot honour (tools, stored conversations, images, JSON output…) is
refused, never ignored: a caller must not get an answer that silently skipped
something it asked for.
"""

import dataclasses
import json

from panels import bounds

from . import server_tools
from .errors import BadRequest
from .request import ROLES, CompletionRequest, json_object, parse

TEXT_PARTS = ("input_text", "output_text")  # what a person or a model wrote
# Fields the two APIs share, handed to chat.completions' reader as they are.
SHARED = ("model", "stream", "temperature", "top_p", "metadata", "user", "fusion", "plugins")
TOOLS = ("tools", "tool_choice")  # server tools only (see _refused); dropped without tools


@dataclasses.dataclass
class ResponseRequest(CompletionRequest):
    instructions: str | None = None  # echoed in the response object


def _refused(data: dict) -> BadRequest | None:
    """The first field asking for something a panel cannot do, with what to do."""
    given = data.get("tools")
    server_only = isinstance(given, list) and all(map(server_tools.is_server_tool, given))
    if given and not server_only:
        # Function tools would come back as function_call items, not written yet here.
        return BadRequest(
            "/v1/responses does not run tools of your own (function tools): leave them out, "
            "or send them to /v1/chat/completions. Server tools (`openrouter:fusion`, "
            "`openrouter:web_search`, …) are taken here.",
            "tools",
        )
    if not given and data.get("tool_choice") not in (None, "auto", "none"):
        return BadRequest(
            '`tool_choice` needs tools: send "auto" or "none", or leave it out.',
            "tool_choice",
        )
    if data.get("previous_response_id") is not None:
        return BadRequest(
            "Responses are not stored, so `previous_response_id` cannot continue one: "
            "send the earlier turns as `input` messages instead.",
            "previous_response_id",
        )
    if data.get("conversation") is not None:
        return BadRequest(
            "Conversations are not stored here: leave `conversation` out and send the "
            "earlier turns as `input` messages.",
            "conversation",
        )
    if data.get("background"):
        return BadRequest(
            'Background responses are not supported: leave `background` out, and use "stream": '
            "true to follow a long run.",
            "background",
        )
    if data.get("prompt") is not None:
        return BadRequest(
            "Stored prompt templates are not supported: send the text as `instructions` "
            "and `input` instead.",
            "prompt",
        )
    if data.get("include"):
        return BadRequest(
            "`include` asks for output a panel does not produce: leave it out or send it empty.",
            "include",
        )
    if data.get("top_logprobs"):
        return BadRequest(
            "A panel's answer has no log probabilities: leave `top_logprobs` out.", "top_logprobs"
        )
    text = data.get("text")
    if text is not None and not isinstance(text, dict):
        return BadRequest("`text` must be an object.", "text")
    output_format = (text or {}).get("format")
    if output_format is not None and not isinstance(output_format, dict):
        return BadRequest("`text.format` must be an object.", "text.format")
    if output_format is not None and output_format.get("type") not in FORMATS:
        return BadRequest(
            "`text.format.type` must be text, json_object or json_schema.", "text.format.type"
        )
    return None


FORMATS = ("text", "json_object", "json_schema")


def _response_format(data: dict) -> dict | None:
    """`text.format` as chat.completions' `response_format` (the Responses API puts a
    schema's fields beside its type; chat.completions nests them in `json_schema`)."""
    output_format = (data.get("text") or {}).get("format") or {}
    kind = output_format.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = {k: v for k, v in output_format.items() if k != "type"}
        return {"type": "json_schema", "json_schema": spec}
    return None


def _renamed(bad: BadRequest) -> BadRequest:
    """A refusal of the translated format, naming the field this request sent."""
    names = (("response_format.json_schema", "text.format"), ("response_format", "text.format"))
    for theirs, ours in names:
        if bad.param and bad.param.startswith(theirs):
            param = ours + bad.param[len(theirs) :]
            message = bad.message.replace(f"`{theirs}", f"`{ours}")
            return BadRequest(message, param)
    return bad


def _content(content, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("`content` must be a string or a list of text parts.", param)
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise BadRequest(
                f"Only text parts (input_text, output_text) are supported, not {kind!r}: "
                "send images and files as text, or leave them out.",
                f"{param}[{i}]",
            )
        parts.append(part["text"])
    return "".join(parts)


def _messages(data: dict) -> list[dict]:
    """`instructions` and `input` as chat messages ({"role", "content"})."""
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("`instructions` must be a string.", "instructions")
    messages = [{"role": "system", "content": instructions}] if instructions else []
    given = data.get("input")
    if isinstance(given, str):
        return [*messages, {"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise BadRequest("`input` must be a string or a non-empty list of messages.", "input")
    for i, item in enumerate(given):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest("Each input item must be an object.", param)
        kind = item.get("type", "message")
        if kind != "message":
            raise BadRequest(
                f"Input items of type {kind!r} are not supported: send messages "
                "(role and content) only.",
                f"{param}.type",
            )
        role = item.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"Unknown role {role!r}; use user, assistant, system or developer.",
                f"{param}.role",
            )
        content = _content(item.get("content"), f"{param}.content")
        messages.append({"role": "system" if role == "developer" else role, "content": content})
    return messages


def read(body: bytes) -> ResponseRequest:
    """The request as chat.completions would have it, or BadRequest naming the field."""
    data = json_object(body)
    if refusal := _refused(data):
        raise refusal
    messages = _messages(data)
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise BadRequest("The last input must be a non-empty user message.", "input")
    max_tokens = data.get("max_output_tokens")
    if max_tokens is not None and not bounds.max_tokens().allows(max_tokens):
        raise BadRequest(
            f"`max_output_tokens` must be {bounds.max_tokens().span}.", "max_output_tokens"
        )
    names = (*SHARED, *TOOLS) if data.get("tools") else SHARED
    chat = {name: data[name] for name in names if data.get(name) is not None}
    chat |= {"messages": messages, "max_tokens": max_tokens}
    if response_format := _response_format(data):
        chat["response_format"] = response_format
    # Re-encoded rather than a second entry point into request.py, which every
    # chat.completions change goes through: this door gets those changes for free.
    try:
        completion = parse(json.dumps(chat).encode())
    except BadRequest as bad:
        raise _renamed(bad) from None
    shared = {f.name: getattr(completion, f.name) for f in dataclasses.fields(completion)}
    return ResponseRequest(**shared, instructions=data.get("instructions"))

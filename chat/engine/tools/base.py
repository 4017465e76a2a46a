"""What a tool is to the engine: a name, a JSON schema the model sees, and a coroutine
that turns arguments into a result — text for the model, a short preview and the
sources for the conversation. A tool never raises for what its input or the outside world
does: every failure becomes a result that says what happened, so the model can go on.
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import redis.asyncio as aioredis


@dataclass
class ToolResult:
    text: str  # what the model reads
    preview: str  # one line for the conversation: "5 results", "fetched example.org/page, 12 kB"
    sources: list[dict] = field(default_factory=list)  # [{"title", "url"}]
    error: str = ""  # set when the tool could not do its job (the text says so too)
    cost_usd: Decimal = Decimal(0)


@dataclass
class ToolEnv:
    """What tools may use during one run."""

    http: httpx.AsyncClient
    redis: aioredis.Redis  # the run's: the search cache
    excluded_domains: tuple[str, ...] = ()
    # The run's panel, for the fusion tool (chat/engine/fusion_tool.py); None where a
    # call may not convene one (a panel's seats, the judge).
    convene: Callable[[dict, str], Awaitable[ToolResult]] | None = None
    # What the model wrote beside this round's tool calls: the fusion tool's decision
    # card quotes it as the model's reason for convening the panel.
    said: str = ""


Runner = Callable[[dict, ToolEnv], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict
    run: Runner

    def schema(self) -> dict:
        """The tool in OpenAI's function format (the Anthropic provider converts it)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def parse_arguments(tool: Tool, raw: str) -> dict | str:
    """The call's arguments as an object, or the reason they cannot be used."""
    try:
        arguments = json.loads(raw or "{}")
    except ValueError as exc:
        return f"The arguments of {tool.name} are not valid JSON ({exc}). Send a JSON object."
    if not isinstance(arguments, dict):
        return f"The arguments of {tool.name} must be a JSON object."
    for name in tool.parameters.get("required", []):
        value = arguments.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"{tool.name} needs `{name}` (text)."
    return arguments


def clipped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n\n[… cut here: {len(text) - limit:,} more characters not shown]"

"""The tools by name, and the one place a model's tool call is carried out."""

import time

from . import fetch, fusion, python, search
from .base import Tool, ToolEnv, ToolResult, parse_arguments

TOOLS: dict[str, Tool] = {t.name: t for t in (search.TOOL, fetch.TOOL, python.TOOL, fusion.TOOL)}
NAMES = list(TOOLS)
PANEL_TOOLS = ("web_search", "web_fetch", "run_python")  # what a panel may give its seats


async def call(name: str, raw_arguments: str, env: ToolEnv) -> tuple[ToolResult, int]:
    """(the result, its latency in ms). Unknown tools and bad arguments are results too."""
    started = time.monotonic()
    tool = TOOLS.get(name)
    if tool is None:
        known = ", ".join(NAMES)
        result = ToolResult(f"There is no tool {name!r}. Tools: {known}.", f"unknown tool {name}")
        result.error = result.text
    else:
        arguments = parse_arguments(tool, raw_arguments)
        if isinstance(arguments, str):
            result = ToolResult(arguments, "bad arguments", error=arguments)
        else:
            try:
                result = await tool.run(arguments, env)
            except Exception as exc:  # a bug of ours: the model still gets an answer
                message = f"{name} failed inside the server ({type(exc).__name__})."
                result = ToolResult(message, "internal error", error=message)
    return result, int((time.monotonic() - started) * 1000)

"""run_python: code executed in the sandbox (sandbox.py); the model reads what it
printed and how it ended."""

from django.conf import settings

from .base import Tool, ToolEnv, ToolResult, clipped
from .sandbox import SandboxLimits, run_python


async def _run(arguments: dict, env: ToolEnv) -> ToolResult:
    code = arguments["code"]
    limits = SandboxLimits(wall_s=settings.RUN_PYTHON_WALL_S, cpu_s=settings.RUN_PYTHON_CPU_S)
    result = await run_python(code, limits)
    lines = code.count("\n") + 1
    if result.ended == "unavailable":
        return ToolResult(result.summary(), "run_python is unavailable", error=result.summary())
    parts = [result.summary()]
    if result.stdout:
        parts.append(f"stdout:\n{clipped(result.stdout, 4000)}")
    if result.stderr:
        parts.append(f"stderr:\n{clipped(result.stderr, 2000)}")
    if result.truncated:
        parts.append("(output cut at the limit)")
    shown = (result.stdout or result.stderr).strip().splitlines()
    first = shown[-1][:80] if shown else result.summary()
    return ToolResult(
        "\n\n".join(parts),
        f"ran {lines} line{'s' if lines != 1 else ''} → {first}",
        error="" if result.ok else result.summary(),
    )


TOOL = Tool(
    name="run_python",
    description=(
        "Run a short Python 3 program in a sandbox (no network, no files but /tmp, a few "
        "seconds of CPU) and get what it printed. Use it to compute or to check what code "
        "does; print() the values you need."
    ),
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The program to run."}},
        "required": ["code"],
    },
    run=_run,
)

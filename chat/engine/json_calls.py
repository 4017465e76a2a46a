"""Small constrained calls whose reply must be a JSON object: a router's plan, a
vote's extraction or tie-break. (The judge's analysis asks the same way.)"""

from chat.models import Answer
from panels.calls import CallLimits
from panels.providers import ChatMessage, ChatRequest

from . import prompts
from .answer import RunContext, run_answer
from .rows import open_call


def json_format(ref: dict, schema: dict) -> dict:
    """Ask for JSON the way the model's server understands: llama.cpp constrains its
    output with the schema itself; OpenAI-compatible APIs take json_object."""
    if ref.get("local"):
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


async def ask_json(
    ctx: RunContext,
    role: str,
    ref: dict,
    messages: tuple[ChatMessage, ...],
    schema: dict,
    max_tokens: int = 300,
    deadline_s: float = 60,
) -> tuple[dict | None, Answer]:
    """One small call whose reply must be a JSON object: (the object or None, its row)."""
    answer, targets = await open_call(ctx, role, [ref], messages)
    if targets is None:
        return None, answer
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        response_format=json_format(ref, schema),
        depth=ctx.run.config.get("depth", 0),
    )
    result = await run_answer(
        ctx, answer, targets, request, CallLimits.from_settings(total_s=deadline_s)
    )
    if not result.ok:
        return None, answer
    return prompts.json_object(result.text), answer

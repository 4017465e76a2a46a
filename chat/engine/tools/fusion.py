"""The `fusion` tool: the model asks the panel. Its run is the engine's, not a tool's
own: convening a panel needs the run (chat/engine/fusion_tool.py), which lends it
through ToolEnv.convene; where nothing lends it (a panel's seat), the tool says so."""

from .base import Tool, ToolEnv, ToolResult

NOT_HERE = "The fusion tool is not available here: answer with what you know."


async def _run(arguments: dict, env: ToolEnv) -> ToolResult:
    if env.convene is None:
        return ToolResult(NOT_HERE, "not available", error=NOT_HERE)
    return await env.convene(arguments, env.said)


TOOL = Tool(
    name="fusion",
    description=(
        "Ask a panel of other AI models the question and get back an analysis of their "
        "answers: what they agree on, where they disagree, what only some covered, unique "
        "insights and blind spots. Use it when the question deserves several opinions "
        "(research, critique, a hard or disputed point); answer simple messages yourself. "
        "Write your final answer from the analysis."
    ),
    parameters={
        "type": "object",
        "properties": {
            "question": {
                "type": "string",
                "description": "The question for the panel, self-contained. Leave it out "
                "to give the panel the user's question as asked.",
            }
        },
    },
    run=_run,
)

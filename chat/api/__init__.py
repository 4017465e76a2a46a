"""The doors other programs use: the OpenAI-compatible API (`/v1/chat/completions`,
`/v1/responses`, `/v1/models`, `/v1/openapi.json`), where the model is a panel
(`fusion`, `fusion/<panel-slug>`, an ad-hoc panel) or a single catalog model, and the
MCP server over HTTP (`/mcp`) and stdio (`manage.py mcp`). API keys, their rate limits
and the response shapes these doors send live here; runs start through the engine."""

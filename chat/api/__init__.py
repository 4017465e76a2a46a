"""The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models, where the
model is a panel (`fusion`, `fusion/<panel-slug>`)."""

"""The engine: everything that takes a run from queued to done. It knows no HTTP
and no templates; the conversation, the API, MCP and the CLI drive it through `runs` and read
what it says through `events`."""

"""The API's request bodies in its OpenAPI document (chat/api/openapi.py): what
chat.completions and the Responses API accept. Bounds and choices come from the
request parsers that enforce them (sampling, tools, the fusion plugin, the
panels' bounds), so the document states the limits the server checks.
"""

from panels import bounds

from . import fusion_plugin, request, responses_request, sampling, server_tools, tools

_MAX_TOKENS, _TEMPERATURE = bounds.max_tokens(), bounds.temperature()

_TOOL_CALLS = bounds.SEAT["max_tool_calls"]()

# OpenRouter Fusion's request extension (chat/api/fusion_plugin.py).
FUSION_PLUGIN = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {
        "id": {"const": "fusion"},
        "analysis_models": {
            "type": "array",
            "minItems": 1,
            "maxItems": fusion_plugin.MAX_ANALYSIS_MODELS,
            "items": {"type": "string", "minLength": 1},
            "description": "The panel for this request: catalog model ids, or "
            "`<provider name>/<model id>`. Absent: the default panel's seats.",
        },
        "model": {
            "type": "string",
            "description": "The judge, which also writes the final answer. Absent: the "
            "outer model if it is a catalog model, else the default panel's judge.",
        },
        "max_tool_calls": {
            "type": "integer",
            "minimum": _TOOL_CALLS.low,
            "maximum": _TOOL_CALLS.high,
            "description": "Tool calls each seat may make (tools as the default panel's).",
        },
        "temperature": {
            "type": "number",
            "minimum": _TEMPERATURE.low,
            "maximum": _TEMPERATURE.high,
            "description": "The seats' temperature; the judge runs at 0.",
        },
        "max_completion_tokens": {
            "type": "integer",
            "minimum": _MAX_TOKENS.low,
            "maximum": _MAX_TOKENS.high,
            "description": "Each seat's limit.",
        },
    },
}
_NAME = {"type": "string", "pattern": f"^{tools.NAME.pattern}$"}
_PLUGIN_PROPERTIES: dict = FUSION_PLUGIN["properties"]  # type: ignore[assignment]
SERVER_TOOL = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": list(server_tools.NAMES)},
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: v for k, v in _PLUGIN_PROPERTIES.items() if k != "id"},
            "description": "openrouter:fusion: the plugin's fields (the panel, its analyst, "
            "its bounds); `max_tool_calls` also bounds the model's server tool calls. The "
            "other tools take `max_tool_calls` only.",
        },
    },
    "description": "A tool this server runs for the model (docs/OPENROUTER_FUSION.md).",
}
SERVER_TOOL_CHOICE = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": list(server_tools.NAMES)}},
    "description": "Forces the model's first call of this server tool.",
}
TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {
                "name": {"type": "string"},
                "arguments": {"type": "string", "description": "JSON text."},
            },
        },
    },
}
TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _NAME,
                "description": {"type": "string"},
                "parameters": {"type": "object", "description": "A JSON Schema."},
                "strict": {"type": "boolean"},
            },
        },
    },
}
MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": list(request.ROLES)},
        "tool_calls": {
            "type": "array",
            "minItems": 1,
            "items": TOOL_CALL,
            "description": "An assistant's calls of the caller's tools.",
        },
        "tool_call_id": {
            "type": "string",
            "description": "A tool message: the call of the assistant message before it that "
            "it answers.",
        },
        "content": {
            "description": "Text; null only for an assistant message with tool_calls.",
            "oneOf": [
                {"type": "null"},
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                    },
                },
            ],
        },
    },
}
# chat/api/sampling.py
SAMPLING = {
    "stop": {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "array",
                "maxItems": sampling.MAX_STOP,
                "items": {"type": "string", "minLength": 1},
            },
            {"type": "null"},
        ],
        "description": "Up to 4 sequences that end the final answer (the synthesizer's, "
        "or the single model's).",
    },
    "seed": {
        "type": ["integer", "null"],
        "minimum": sampling.SEED_RANGE[0],
        "maximum": sampling.SEED_RANGE[1],
        "description": "Sent to the call that writes the final answer, where its "
        "provider supports one.",
    },
    "n": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "Only 1: one choice per request (any other value is refused).",
    },
    "logprobs": {
        "type": ["boolean", "null"],
        "description": "Not supported: `true` is refused with 400.",
    },
    "top_logprobs": {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": 20,
        "description": "Not supported: anything but 0 is refused with 400.",
    },
}
REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "description": "`fusion` (or `openrouter/fusion`), `fusion/<panel-slug>`, or a "
            "catalog model's id from GET /v1/models (`<model_id>` or `<provider>/<model_id>`): "
            "that one model answers. With the header `X-Fusion-Alias: tool`, "
            "`openrouter/fusion` is one model with the fusion server tool attached.",
        },
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {
            "type": "integer",
            "minimum": _MAX_TOKENS.low,
            "maximum": _MAX_TOKENS.high,
            "description": "The synthesizer's limit.",
        },
        "temperature": {
            "type": "number",
            "minimum": _TEMPERATURE.low,
            "maximum": _TEMPERATURE.high,
            "description": "The synthesizer's temperature.",
        },
        "user": {"type": "string"},
        "metadata": {"type": "object"},
        "fusion": {
            "type": "object",
            "properties": {
                "progress": {"type": "boolean"},
                "panel": {
                    "type": "object",
                    "description": "An ad-hoc panel for this request: a recipe "
                    "(docs/RECIPES.md), nothing saved.",
                },
            },
            "description": "Extension: panel progress chunks in a stream; an ad-hoc panel.",
        },
        "plugins": {
            "type": "array",
            "items": FUSION_PLUGIN,
            "description": "OpenRouter's `fusion` plugin: an ad-hoc panel for this request.",
        },
        **SAMPLING,
        "tools": {
            "type": "array",
            "maxItems": tools.MAX_TOOLS,
            "items": {"oneOf": [TOOL, SERVER_TOOL]},
            "description": "The caller's own tools, which the caller runs. The seats read "
            "them; the synthesizer (or one model alone) may answer with tool_calls. Refused "
            "(400, param `tools`) where the answerer cannot call tools. Server tools "
            "(`openrouter:fusion`, …) are offered to one model, which this server runs.",
        },
        "tool_choice": {
            "oneOf": [
                {"type": "string", "enum": list(tools.CHOICES)},
                SERVER_TOOL_CHOICE,
                {
                    "type": "object",
                    "required": ["type", "function"],
                    "properties": {
                        "type": {"const": "function"},
                        "function": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": _NAME},
                        },
                    },
                },
            ]
        },
        "parallel_tool_calls": {"type": "boolean"},
        "response_format": {
            "description": "JSON modes: the seats and the synthesizer are asked for the "
            "format, and the final answer is checked (502, code `format_mismatch`, when it "
            "does not match). A stream sends the checked JSON in one piece.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": ["text", "json_object"]}},
                },
                {
                    "type": "object",
                    "required": ["type", "json_schema"],
                    "properties": {
                        "type": {"const": "json_schema"},
                        "json_schema": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": _NAME,
                                "schema": {"type": "object"},
                                "strict": {"type": "boolean"},
                                "description": {"type": "string"},
                            },
                        },
                    },
                },
            ],
        },
    },
}
# POST /v1/responses (chat/api/responses.py): OpenAI's Responses API, text only.
RESPONSE_INPUT_ITEM = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "type": {"const": "message"},
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"enum": list(responses_request.TEXT_PARTS)},
                            "text": {"type": "string"},
                        },
                    },
                },
            ]
        },
    },
}
RESPONSE_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "description": "Refused with 400 naming the field: function `tools` (server tools are "
    "taken), a `tool_choice` without tools, `previous_response_id`, `conversation`, "
    "`background`, `prompt`, `include`, `top_logprobs`, and input items other than text "
    "messages (images, files, function calls).",
    "properties": {
        "model": {"type": "string", "description": "`fusion` or `fusion/<panel-slug>`."},
        "input": {
            "oneOf": [
                {"type": "string", "description": "One user message."},
                {"type": "array", "minItems": 1, "items": RESPONSE_INPUT_ITEM},
            ]
        },
        "instructions": {"type": ["string", "null"], "description": "A system message."},
        "max_output_tokens": {
            "type": ["integer", "null"],
            "minimum": _MAX_TOKENS.low,
            "maximum": _MAX_TOKENS.high,
            "description": "The synthesizer's limit.",
        },
        "temperature": {
            "type": ["number", "null"],
            "minimum": _TEMPERATURE.low,
            "maximum": _TEMPERATURE.high,
            "description": "The synthesizer's temperature.",
        },
        "metadata": {"type": "object"},
        "stream": {"type": "boolean"},
        "store": {"type": "boolean", "description": "Accepted; responses are not stored."},
        "tools": {
            "type": "array",
            "items": SERVER_TOOL,
            "description": "Server tools only (`openrouter:fusion`, …), for one model.",
        },
        "tool_choice": {
            "oneOf": [{"type": "string", "enum": list(tools.CHOICES)}, SERVER_TOOL_CHOICE]
        },
        "user": {"type": "string"},
        "text": {
            "type": "object",
            "properties": {
                "format": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": list(responses_request.FORMATS)},
                        "name": {"type": "string"},
                        "schema": {"type": "object"},
                        "strict": {"type": "boolean"},
                        "description": {"type": "string"},
                    },
                    "description": "JSON modes, as chat.completions' `response_format`: "
                    "the answer is checked JSON (502 `format_mismatch` when it is not).",
                }
            },
        },
        "fusion": {
            "type": "object",
            "properties": {"progress": {"type": "boolean"}},
            "description": "Extension: `fusion.progress` events in a stream.",
        },
    },
}

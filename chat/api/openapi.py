"""The API's OpenAPI 3.1 description, served at /v1/openapi.json and as /v1/docs."""

from panels import bounds

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
            "maxItems": 8,
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
# OpenRouter Fusion's response fields (chat/api/fusion_fields.py).
FUSION_ANALYSIS = {
    "type": ["object", "null"],
    "description": "The judge's analysis, answers named by model id; null when the judge "
    "gave none (see failure_reason).",
    "properties": {
        "consensus": {"type": "array", "items": {"type": "string"}},
        "contradictions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["topic", "stances"],
                "properties": {
                    "topic": {"type": "string"},
                    "stances": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["model", "stance"],
                            "properties": {
                                "model": {"type": "string"},
                                "stance": {"type": "string"},
                            },
                        },
                    },
                    "verdict": {"type": "string", "description": "Extension: who is right."},
                },
            },
        },
        "partial_coverage": {"type": "array", "items": {"type": "object"}},
        "unique_insights": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["model", "insight"],
                "properties": {"model": {"type": "string"}, "insight": {"type": "string"}},
            },
        },
        "blind_spots": {"type": "array", "items": {"type": "string"}},
    },
}
FUSION_RESPONSES = {
    "type": "array",
    "description": "The panel models that answered, and what they said.",
    "items": {
        "type": "object",
        "required": ["model", "content"],
        "properties": {"model": {"type": "string"}, "content": {"type": "string"}},
    },
}
FAILED_MODELS = {
    "type": "array",
    "description": "The panel models that did not answer, and why.",
    "items": {
        "type": "object",
        "required": ["model", "error"],
        "properties": {
            "model": {"type": "string"},
            "error": {"type": "string"},
            "status_code": {"type": "integer"},
        },
    },
}
FAILURE_REASON = {
    "type": ["string", "null"],
    "enum": [
        "all_panels_failed",
        "insufficient_credits",
        "rate_limited",
        "judge_not_valid_json",
        "judge_schema_mismatch",
        "judge_upstream_error",
        "judge_empty_completion",
        None,
    ],
    "description": "Why the run failed, or why the judge gave no analysis.",
}
OPENROUTER_FIELDS = {
    "analysis": FUSION_ANALYSIS,
    "responses": FUSION_RESPONSES,
    "failed_models": FAILED_MODELS,
    "failure_reason": FAILURE_REASON,
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        },
        "fusion": {"type": "object"},
        **OPENROUTER_FIELDS,
    },
}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
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
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
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
            {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
            {"type": "null"},
        ],
        "description": "Up to 4 sequences that end the final answer (the synthesizer's, "
        "or the single model's).",
    },
    "seed": {
        "type": ["integer", "null"],
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
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
            "that one model answers.",
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
            "maxItems": 128,
            "items": TOOL,
            "description": "The caller's own tools, which the caller runs. The seats read "
            "them; the synthesizer (or one model alone) may answer with tool_calls. Refused "
            "(400, param `tools`) where the answerer cannot call tools.",
        },
        "tool_choice": {
            "oneOf": [
                {"type": "string", "enum": ["none", "auto", "required"]},
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
USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "cost": {"type": ["number", "null"]},
    },
}
DECISION = {
    "type": "object",
    "required": ["stage", "summary", "ms", "detail"],
    "properties": {
        "stage": {"type": "string", "enum": ["route", "vote", "gate", "escalate"]},
        "summary": {"type": "string", "description": "The decision in words."},
        "ms": {"type": "integer", "description": "When, in ms after the run started."},
        "detail": {"type": "object", "description": "The numbers behind it."},
    },
}
FUSION_RESULT = {
    "type": "object",
    "description": "Extension: what the panel did (chat/engine/events.py api_fusion).",
    "properties": {
        "run": {"type": "integer"},
        "panel": {"type": ["object", "null"]},
        "status": {"type": "string"},
        "failure_reason": {"type": ["string", "null"]},
        "failed_models": {"type": "array", "items": {"type": "string"}},
        "seats": {"type": "array", "items": {"type": "object"}},
        "analysis": {"type": ["object", "null"]},
        "cost": {"type": ["number", "null"]},
        "cost_of_most_expensive_seat": {"type": ["number", "null"]},
        "stage_ms": {"type": "object"},
        "strategy": {
            "type": "string",
            "enum": ["fusion", "vote", "route", "gate", "escalate"],
            "description": "How the panel answered.",
        },
        "decisions": {
            "type": "array",
            "items": DECISION,
            "description": "Every automatic decision of the strategy, in order.",
        },
    },
}
COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": USAGE,
        "fusion": FUSION_RESULT,
        **OPENROUTER_FIELDS,
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
                            "type": {"enum": ["input_text", "output_text"]},
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
    "description": "Refused with 400 naming the field: `tools`, a `tool_choice` other than "
    "auto/none, `previous_response_id`, `conversation`, `background`, `prompt`, `include`, "
    "`top_logprobs`, and input items other than text messages (images, files, function "
    "calls).",
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
        "user": {"type": "string"},
        "text": {
            "type": "object",
            "properties": {
                "format": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["text", "json_object", "json_schema"]},
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
RESPONSE_MESSAGE = {
    "type": "object",
    "required": ["type", "id", "status", "role", "content"],
    "properties": {
        "type": {"const": "message"},
        "id": {"type": "string"},
        "status": {"enum": ["in_progress", "completed", "incomplete"]},
        "role": {"const": "assistant"},
        "content": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text", "annotations"],
                "properties": {
                    "type": {"const": "output_text"},
                    "text": {"type": "string"},
                    "annotations": {"type": "array"},
                },
            },
        },
    },
}
RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created_at", "status", "model", "output", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "created_at": {"type": "integer"},
        "completed_at": {"type": ["integer", "null"]},
        "status": {"enum": ["completed", "incomplete"]},
        "error": {"type": "null"},
        "incomplete_details": {
            "type": ["object", "null"],
            "properties": {"reason": {"const": "max_output_tokens"}},
        },
        "instructions": {"type": ["string", "null"]},
        "model": {"type": "string"},
        "output": {"type": "array", "items": RESPONSE_MESSAGE},
        "usage": {
            "type": "object",
            "properties": {
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "input_tokens_details": {"type": "object"},
                "output_tokens_details": {"type": "object"},
                "cost": {"type": ["number", "null"]},
            },
        },
        "fusion": FUSION_RESULT,
    },
}


# chat/api/conventions.py
REQUEST_ID_HEADER = {
    "description": "The caller's X-Request-Id when it is a token of up to 128 letters, "
    "digits and `._:@+=/-`, else a new `req_…` id.",
    "schema": {"type": "string"},
}
RATE_HEADERS = {
    "x-ratelimit-limit-requests": {
        "description": "Requests a minute the key's owner may make (all their keys).",
        "schema": {"type": "string"},
    },
    "x-ratelimit-remaining-requests": {
        "description": "Requests left in the current window.",
        "schema": {"type": "string"},
    },
    "x-ratelimit-reset-requests": {
        "description": "Until the window closes, e.g. `42s`.",
        "schema": {"type": "string"},
    },
}
HEADERS = {"X-Request-Id": REQUEST_ID_HEADER, **RATE_HEADERS}
REQUEST_ID_PARAMETER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "Your id for this request, echoed back; one is made when absent.",
    "schema": {"type": "string"},
}
MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string", "description": "Panels only."},
        "context_length": {"type": "integer", "description": "Catalog models only."},
        "pricing": {
            "type": "object",
            "description": "Catalog models only: USD per token, as decimal strings; null "
            "when unknown.",
            "properties": {
                "prompt": {"type": ["string", "null"]},
                "completion": {"type": ["string", "null"]},
            },
        },
    },
}


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad request: the field is named in `param` (tools the panel cannot call: "
        "`tools`, code `tools_unsupported`).",
        401: "Missing, wrong or revoked API key.",
        402: "A budget of yours is spent; `error.limit` has its numbers.",
        403: "The panel is no longer shared with you.",
        404: "No such panel or model for this key.",
        413: "Body too large.",
        429: "Rate limit reached; see Retry-After.",
        502: "Every seat, or the synthesis, failed; or the answer did not match the "
        "response_format (code `format_mismatch`).",
        499: "The run was cancelled.",
        508: "Fusion depth limit reached (X-Fusion-Depth).",
    }
    return {
        str(code): {
            "description": text[code],
            "headers": HEADERS,
            "content": {"application/json": {"schema": ERROR}},
        }
        for code in codes
    }


SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "Fusion Room API",
        "version": "1",
        "description": "OpenAI-compatible: the model is a panel of LLMs, or one of "
        "the catalog's models answering alone.",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "summary": "Ask a panel; the answer is the synthesis.",
                "operationId": "createChatCompletion",
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                    for name in ("X-Fusion-Depth", "X-OpenRouter-Fusion-Depth")
                ]
                + [REQUEST_ID_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": REQUEST}},
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion, or an SSE stream of chunks.",
                        "headers": HEADERS,
                        "content": {
                            "application/json": {"schema": COMPLETION},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 402, 403, 404, 413, 429, 499, 502, 508),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The panels, and the catalog models, this key may use.",
                "operationId": "listModels",
                "parameters": [REQUEST_ID_PARAMETER],
                "responses": {
                    "200": {
                        "description": "A list of models: `fusion`, `fusion/<panel>` and "
                        "each catalog model with its context length and prices.",
                        "headers": HEADERS,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["object", "data"],
                                    "properties": {
                                        "object": {"const": "list"},
                                        "data": {
                                            "type": "array",
                                            "items": MODEL,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_errors(401, 429),
                },
            }
        },
        "/v1/responses": {
            "post": {
                "summary": "Ask a panel through OpenAI's Responses API (text in, text out).",
                "operationId": "createResponse",
                "parameters": [
                    {
                        "name": "X-Fusion-Depth",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": RESPONSE_REQUEST}},
                },
                "responses": {
                    "200": {
                        "description": "A response object, or an SSE stream of response "
                        "events (response.created … response.completed).",
                        "content": {
                            "application/json": {"schema": RESPONSE},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 402, 403, 404, 413, 429, 499, 502, 508),
                },
            }
        },
    },
}

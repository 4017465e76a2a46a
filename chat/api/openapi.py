"""The API's OpenAPI 3.1 description, served at /v1/openapi.json and as /v1/docs."""

from panels import bounds

_MAX_TOKENS, _TEMPERATURE = bounds.max_tokens(), bounds.temperature()

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
REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "description": "`fusion` or `fusion/<panel-slug>`."},
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
            "properties": {"progress": {"type": "boolean"}},
            "description": "Extension: panel progress chunks in a stream.",
        },
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
    },
}


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad request: the field is named in `param` (tools the panel cannot call: "
        "`tools`, code `tools_unsupported`).",
        401: "Missing, wrong or revoked API key.",
        404: "No such panel for this key.",
        413: "Body too large.",
        429: "Rate limit reached; see Retry-After.",
        502: "Every seat, or the synthesis, failed; or the answer did not match the "
        "response_format (code `format_mismatch`).",
        499: "The run was cancelled.",
        508: "Fusion depth limit reached (X-Fusion-Depth).",
    }
    return {
        str(code): {"description": text[code], "content": {"application/json": {"schema": ERROR}}}
        for code in codes
    }


SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "Fusion Room API",
        "version": "1",
        "description": "OpenAI-compatible: the model is a panel of LLMs.",
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
                        "name": "X-Fusion-Depth",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": REQUEST}},
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion, or an SSE stream of chunks.",
                        "content": {
                            "application/json": {"schema": COMPLETION},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 413, 429, 499, 502, 508),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The panels this key may use, as models.",
                "operationId": "listModels",
                "responses": {
                    "200": {
                        "description": "A list of models.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["object", "data"],
                                    "properties": {
                                        "object": {"const": "list"},
                                        "data": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id", "object"],
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_errors(401),
                },
            }
        },
    },
}

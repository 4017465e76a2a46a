"""The API's OpenAPI 3.1 description, served at /v1/openapi.json and as /v1/docs.

The response shapes are derived from the types the API builds them with
(chat/api/run_result.py, chat/api/fusion_fields.py, the engine's `Decision` and the
judge's analysis in chat/engine/analysis.py) by core/json_schema.py; the request
bodies are chat/api/openapi_requests.py, bounded by the parsers' own limits. What is
written here by hand is the rest of the wire: paths, headers, errors, the models
list and the OpenAI envelopes around our shapes.
"""

from core.json_schema import json_schema

from .fusion_fields import HostedFields
from .openapi_requests import REQUEST, RESPONSE_REQUEST
from .run_result import FusionResult, Usage

# OpenRouter Fusion's response fields (chat/api/fusion_fields.py).
OPENROUTER_FIELDS = json_schema(HostedFields)["properties"]

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
USAGE = json_schema(Usage)
FUSION_RESULT = {
    **json_schema(FusionResult),
    "description": "Extension: what the panel did (chat/api/run_result.py).",
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
                "server_tool_use": {
                    "type": "object",
                    "description": "With server tools: how often they ran.",
                    "properties": {
                        name: {"type": "integer"}
                        for name in ("fusion_requests", "web_search_requests", "web_fetch_requests")
                    },
                },
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
ALIAS_PARAMETER = {
    "name": "X-Fusion-Alias",
    "in": "header",
    "required": False,
    "description": "What `openrouter/fusion` means for this request: `tool`, one model "
    "with the `openrouter:fusion` server tool attached (as OpenRouter's hosted service), "
    "or `panel`, the default panel with judge and synthesis. Absent: the site's "
    "API_FUSION_ALIAS (`panel` unless set).",
    "schema": {"type": "string", "enum": ["tool", "panel"]},
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
        "response_format (code `format_mismatch`); or tool_choice asked for a tool call "
        "that the model did not make, even when asked again (code `tool_choice_unmet`).",
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
                + [ALIAS_PARAMETER, REQUEST_ID_PARAMETER],
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
                    },
                    ALIAS_PARAMETER,
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

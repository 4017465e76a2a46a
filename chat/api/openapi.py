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
MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                    },
                },
            ]
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
            "description": "`fusion`, `fusion/<panel-slug>`, or a catalog model's id from "
            "GET /v1/models (`<model_id>` or `<provider>/<model_id>`): that one model answers.",
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
            "properties": {"progress": {"type": "boolean"}},
            "description": "Extension: panel progress chunks in a stream.",
        },
        **SAMPLING,
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
        400: "Bad request: the field is named in `param`.",
        401: "Missing, wrong or revoked API key.",
        404: "No such panel or model for this key.",
        413: "Body too large.",
        429: "Rate limit reached; see Retry-After.",
        502: "Every seat, or the synthesis, failed.",
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
                        "name": "X-Fusion-Depth",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    REQUEST_ID_PARAMETER,
                ],
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
                    **_errors(400, 401, 404, 413, 429, 499, 502, 508),
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
    },
}

"""The bundled llama.cpp servers (xllamacpp), as the app talks to them: through the
`openai` provider. These guard the facts docs/LOCAL_MODELS.md relies on."""

import asyncio
import json
import time

import httpx
import pytest

from panels import local_models
from panels.providers import (
    ChatMessage,
    ChatRequest,
    ErrorKind,
    ProviderError,
    TextDelta,
    Usage,
    provider_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.models]


async def _stream(model, content: str, max_tokens: int, **extra) -> dict:
    request = ChatRequest(
        model=model.key, messages=(ChatMessage("user", content),), max_tokens=max_tokens, **extra
    )
    started, first, events = time.monotonic(), None, []
    async with httpx.AsyncClient(timeout=120) as client:
        async for event in provider_for(model.endpoint, client).stream(request):
            if isinstance(event, TextDelta) and first is None:
                first = time.monotonic()
            events.append(event)
    return {
        "text": "".join(e.text for e in events if isinstance(e, TextDelta)),
        "usage": next(e for e in events if isinstance(e, Usage)),
        "first": first,
        "end": time.monotonic(),
        "started": started,
    }


async def test_two_streams_to_one_model_decode_together_and_report_usage(model_servers):
    model = local_models.SMOLLM2
    a, b = await asyncio.gather(
        _stream(model, "Describe the sea in three sentences.", 48, temperature=0),
        _stream(model, "Describe a forest in three sentences.", 48, temperature=0),
    )
    for answer in (a, b):
        assert answer["text"].strip()
        # Streamed usage comes from the server (stream_options.include_usage), not an estimate.
        assert not answer["usage"].estimated
        assert 0 < answer["usage"].output_tokens <= 48 and answer["usage"].input_tokens > 5
    # Two slots: each stream's first token arrived before the other one ended.
    assert a["first"] < b["end"] and b["first"] < a["end"]


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "integer"},
        "confidence": {"type": "string", "enum": ["low", "high"]},
    },
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "result", "schema": SCHEMA}},
        # llama-cpp-python's shape, which the judge sends to local models: also honoured.
        {"type": "json_object", "schema": SCHEMA},
    ],
    ids=["json_schema", "json_object+schema"],
)
async def test_a_json_schema_answer_parses(model_servers, response_format):
    answer = await _stream(
        local_models.QWEN_1_5B, "What is 6 times 7?", 40, response_format=response_format
    )
    data = json.loads(answer["text"])
    assert set(data) == {"answer", "confidence"} and data["confidence"] in ("low", "high")
    assert data["answer"] == 42


async def test_context_overflow_is_a_typed_error(model_servers):
    model = local_models.SMOLLM2
    too_long = "word " * (model.served_context + 500)
    with pytest.raises(ProviderError) as error:
        await _stream(model, too_long, 16)
    assert error.value.kind == ErrorKind.CONTEXT_LENGTH, error.value
    assert error.value.status == 400 and "context size" in error.value.provider_message


def test_any_model_name_is_answered_by_the_model_on_that_port(model_servers):
    """The server does not check `model`: requests are routed by port, and the answer
    names the model really loaded (its alias), not the name sent."""
    model = local_models.SMOLLM2
    response = httpx.post(
        f"{model.base_url}/chat/completions",
        json={
            "model": "no-such-model",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        },
        timeout=60,
    )
    assert response.status_code == 200 and response.json()["model"] == model.key

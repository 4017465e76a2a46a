"""Reading a /v1/responses body: the Responses API's words turned into a panel's
conversation, and everything a panel cannot honour refused with the field named."""

import json

import pytest

from chat.api.errors import BadRequest
from chat.api.responses_request import read

QUESTION = {"model": "fusion/local", "input": "Is 7 prime?"}


def _read(**fields):
    return read(json.dumps({**QUESTION, **fields}).encode())


def _refusal(**fields) -> BadRequest:
    with pytest.raises(BadRequest) as refused:
        _read(**fields)
    return refused.value


def test_a_string_input_with_instructions_is_a_system_and_a_user_message():
    asked = _read(
        instructions="Answer in one word.",
        max_output_tokens=64,
        temperature=0.3,
        metadata={"ticket": "42"},
        stream=True,
        fusion={"progress": True},
    )
    assert asked.messages == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Is 7 prime?"},
    ]
    assert asked.question == "Is 7 prime?"
    assert (asked.max_tokens, asked.temperature, asked.metadata) == (64, 0.3, {"ticket": "42"})
    assert asked.stream and asked.progress and asked.instructions == "Answer in one word."


def test_message_items_keep_their_roles_and_join_their_text_parts():
    asked = _read(
        input=[
            {"role": "developer", "content": "Be brief."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "2+2?"}],
            },
            {
                "type": "message",
                "id": "msg_earlier",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "4", "annotations": []}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And "},
                    {"type": "input_text", "text": "times 3?"},
                ],
            },
        ]
    )
    assert asked.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times 3?"},
    ]
    assert asked.instructions is None and not asked.stream


def test_what_sdks_send_by_default_is_accepted():
    """Agent frameworks send these empty or at their defaults: no reason to refuse."""
    asked = _read(
        tools=[],
        tool_choice="auto",
        include=[],
        store=True,
        background=False,
        previous_response_id=None,
        parallel_tool_calls=True,
        truncation="disabled",
        text={"format": {"type": "text"}},
        max_output_tokens=None,
        stream=None,
    )
    assert asked.question == "Is 7 prime?" and not asked.stream


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"tools": [{"type": "function", "name": "f"}]}, "tools", "does not run tools"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"previous_response_id": "resp_1"}, "previous_response_id", "earlier turns"),
        ({"conversation": "conv_1"}, "conversation", "not stored"),
        ({"background": True}, "background", "stream"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "instructions"),
        ({"include": ["message.output_text.logprobs"]}, "include", "leave it out"),
        ({"top_logprobs": 3}, "top_logprobs", "log probabilities"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "json_schema"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 7}}}},
            "text.format.schema",
            "not a valid JSON Schema",
        ),
        ({"input": ""}, "input", "non-empty user message"),
        ({"input": []}, "input", "non-empty list"),
        ({"input": 7}, "input", "string or a non-empty list"),
        ({"input": ["hi"]}, "input[0]", "object"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "input[0].type",
            "'function_call_output'",
        ),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role", "'robot'"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "https://example.com/a.png"},
                        ],
                    }
                ]
            },
            "input[0].content[1]",
            "'input_image'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
            "'input_file'",
        ),
        ({"input": [{"role": "assistant", "content": "Hi"}]}, "input", "user message"),
        ({"input": "a\x00b"}, "input", "NUL"),
        ({"instructions": ["x"]}, "instructions", "string"),
        ({"max_output_tokens": 5}, "max_output_tokens", "from 16 to"),
        ({"temperature": 9}, "temperature", "from 0 to 2"),
        ({"model": None}, "model", "required"),
        ({"stream": "yes"}, "stream", "true or false"),
    ],
)
def test_what_a_panel_cannot_honour_is_refused_naming_the_field(fields, param, says):
    refused = _refusal(**fields)
    assert refused.param == param
    assert says in refused.message


def test_a_body_that_is_not_a_json_object_is_refused():
    with pytest.raises(BadRequest, match="not valid JSON"):
        read(b"{nope")
    with pytest.raises(BadRequest, match="JSON object"):
        read(b"[]")


def test_text_format_asks_for_json_as_chat_completions_response_format_does():
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}}
    city = {"type": "json_schema", "name": "city", "schema": schema, "strict": True}
    assert _read(text={"format": city}).response_format == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    json_object = _read(text={"format": {"type": "json_object"}}).response_format
    assert json_object == {"type": "json_object"}
    assert _read(text={"format": {"type": "text"}}).response_format is None

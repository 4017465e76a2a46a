"""Reading client tools, tool turns and response_format from a chat.completions body:
what the panel is given, and every refusal naming its field."""

import json

import pytest

from chat.api.errors import BadRequest
from chat.api.request import parse
from chat.engine import json_modes, prompts

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def body(**fields) -> bytes:
    fields.setdefault("model", "fusion")
    fields.setdefault("messages", [{"role": "user", "content": "Weather in Paris?"}])
    return json.dumps(fields).encode()


def refused(**fields) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(body(**fields))
    return caught.value


def test_tools_and_tool_choice_are_read_in_openais_shape():
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = parse(body(tools=[WEATHER], tool_choice=named, parallel_tool_calls=False))
    assert request.tools == [WEATHER]
    assert request.tool_choice == named and request.parallel_tool_calls is False
    assert parse(body(tools=[WEATHER], tool_choice="required")).tool_choice == "required"
    assert parse(body()).tools == [] and parse(body()).tool_choice is None


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tools": {"a": 1}}, "tools", "must be a list"),
        ({"tools": [{"type": "code"}]}, "tools[0].type", "`function`"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "`function` object"),
        (
            {"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
            "tools[0].function.name",
            "letters, digits",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "objekt"}},
                    }
                ]
            },
            "tools[0].function.parameters",
            "not a valid JSON Schema",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "Two tools"),
        ({"tool_choice": "auto"}, "tool_choice", "only allowed when `tools`"),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice", "none, auto, required"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
            "name one of the tools",
        ),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or"),
        ({"functions": [WEATHER["function"]]}, "functions", "deprecated"),
    ],
)
def test_bad_tools_are_refused_naming_the_field(fields, param, words):
    error = refused(**fields)
    assert error.param == param and words in error.message


def test_a_tool_round_becomes_part_of_the_question():
    request = parse(
        body(
            tools=[WEATHER],
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 °C, sunny"},
            ],
        )
    )
    assert [m["role"] for m in request.messages] == ["system", "user"]
    question = request.question
    assert question.startswith("Weather in Paris?")
    assert 'get_weather({"city": "Paris"}) returned: 18 °C, sunny' in question


def test_earlier_tool_rounds_are_turns_in_words():
    request = parse(
        body(
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
                {"role": "assistant", "content": "It is 18 °C."},
                {"role": "user", "content": "And tomorrow?"},
            ]
        )
    )
    roles = [m["role"] for m in request.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert "Let me look." in request.messages[1]["content"]
    assert 'Called tools:\n- get_weather({"city": "Paris"})' in request.messages[1]["content"]
    assert request.messages[2]["content"] == (
        'Tool results:\n- get_weather({"city": "Paris"}) returned: 18 °C'
    )
    assert request.question == "And tomorrow?"


def test_an_orphan_tool_message_is_refused_naming_its_tool_call_id():
    error = refused(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
            {"role": "tool", "tool_call_id": "call_9", "content": "?"},
        ]
    )
    assert error.param == "messages[3].tool_call_id" and "call_9" in error.message
    error = refused(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
        ]
    )
    assert error.param == "messages[1].tool_call_id"


def test_a_call_left_unanswered_is_refused():
    error = refused(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "user", "content": "Well?"},
        ]
    )
    assert error.param == "messages[1].tool_calls" and "call_1" in error.message
    bad_call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
    error = refused(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [bad_call]},
        ]
    )
    assert error.param == "messages[1].tool_calls[0]"


def test_response_format_modes_are_read_and_bad_schemas_refused():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema, "strict": True},
    }
    assert parse(body(response_format=fmt)).response_format == fmt
    assert parse(body(response_format={"type": "json_object"})).response_format == {
        "type": "json_object"
    }
    assert parse(body(response_format={"type": "text"})).response_format is None
    error = refused(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": []}}
    )
    assert error.param == "response_format.json_schema.schema"
    error = refused(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": "zero"}},
        }
    )
    assert error.param == "response_format.json_schema.schema" and "minimum" in error.message
    error = refused(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"$ref": "#/a"}},
        }
    )
    assert error.param == "response_format.json_schema.schema" and "'#/a'" in error.message
    assert refused(response_format={"type": "yaml"}).param == "response_format.type"
    error = refused(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert error.param == "response_format.json_schema.name"


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_a_fenced_json_answer_is_unwrapped_and_checked():
    assert json_modes.conform('```json\n{"city": "Paris"}\n```', SCHEMA_FORMAT) == (
        '{"city": "Paris"}'
    )
    assert json_modes.conform(' {"a": 1} ', {"type": "json_object"}) == '{"a": 1}'


@pytest.mark.parametrize(
    ("text", "fmt", "words"),
    [
        ("Paris is the capital.", {"type": "json_object"}, "not valid JSON"),
        ("[1, 2]", {"type": "json_object"}, "not an object"),
        ('{"town": "Paris"}', SCHEMA_FORMAT, "'city' is a required property"),
        ("```json\n{oops}\n```", SCHEMA_FORMAT, "not valid JSON"),
    ],
)
def test_an_answer_out_of_format_is_refused_with_an_excerpt(text, fmt, words):
    with pytest.raises(json_modes.FormatMismatch) as caught:
        json_modes.conform(text, fmt)
    assert words in str(caught.value) and text.split()[0][:8] in str(caught.value)


def test_the_final_answers_cleanup_leaves_json_alone():
    answer = '{"note": "According to answer A, this is right.\\nFinal answer:"}'
    assert prompts.clean_final(answer) == answer
    assert prompts.clean_final("According to answer A, red.") == "Red."

"""A caller's JSON Schemas are held to a budget before any schema work and before a
run starts, and checking an answer against one is bounded in time and never crashes
(issue 23, HIGH 2 and MEDIUM 5; chat/engine/json_modes.py, docs/LIMITS.md)."""

import json
import time

import pytest

from chat.api.errors import BadRequest
from chat.api.keys import create_key
from chat.api.request import parse
from chat.engine import json_modes
from chat.models import Message, Run


def doubling(depth: int) -> dict:
    """`d_i = allOf[$ref d_{i-1}, $ref d_{i-1}]`: about 1 KB that expands to 2^depth."""
    defs = {"d0": {"type": "string"}}
    for i in range(1, depth + 1):
        twice = [{"$ref": f"#/$defs/d{i - 1}"}, {"$ref": f"#/$defs/d{i - 1}"}]
        defs[f"d{i}"] = {"allOf": twice}
    return {"$defs": defs, "$ref": f"#/$defs/d{depth}"}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "shape", "schema": schema}}


def tool(schema: dict, name: str = "f") -> dict:
    return {"type": "function", "function": {"name": name, "parameters": schema}}


def refused(**fields) -> BadRequest:
    fields.setdefault("model", "fusion")
    fields.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with pytest.raises(BadRequest) as caught:
        parse(json.dumps(fields).encode())
    return caught.value


def test_the_doubling_schema_is_refused_at_once_naming_the_field():
    assert len(json.dumps(doubling(16))) < 1200
    started = time.monotonic()
    error = refused(response_format=schema_format(doubling(16)))
    assert time.monotonic() - started < 0.5
    assert error.param == "response_format.json_schema.schema"
    assert "20,000 subschemas" in error.message
    ok = {"type": "object"}
    error = refused(tools=[tool(ok, "a"), tool(ok, "b"), tool(doubling(30), "c")])
    assert error.param == "tools[2].function.parameters"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"allOf": [{"$ref": "#"}]},
        {
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"not": {"$ref": "#/$defs/a"}}},
            "$ref": "#/$defs/a",
        },
    ],
)
def test_a_ref_cycle_that_never_moves_into_the_answer_is_refused(schema):
    error = refused(response_format=schema_format(schema))
    assert error.param == "response_format.json_schema.schema"
    assert "never end" in error.message


def test_a_recursive_schema_that_moves_into_the_answer_is_kept_and_checks_answers():
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["name"],
    }
    fmt = schema_format(tree)
    request = parse(
        json.dumps(
            {
                "model": "fusion",
                "messages": [{"role": "user", "content": "Hi"}],
                "response_format": fmt,
            }
        ).encode()
    )
    assert request.response_format["json_schema"]["schema"] == tree
    answer = json.dumps({"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]})
    assert json_modes.conform(answer, fmt) == answer
    with pytest.raises(json_modes.FormatMismatch, match="'name' is a required property"):
        json_modes.conform('{"children": [{}]}', fmt)


def test_a_large_but_legal_schema_is_kept():
    # 40 tools of 30 properties each, about 3,700 values in all: a heavy agent's tools.
    fields = {f"field_{i}": {"type": "string", "description": "what it is"} for i in range(30)}
    schema = {"type": "object", "properties": fields, "required": list(fields)}
    tools = [tool(schema, f"tool_{n}") for n in range(40)]
    fields = {"model": "fusion", "messages": [{"role": "user", "content": "Hi"}], "tools": tools}
    assert len(parse(json.dumps(fields).encode()).tools) == 40


def test_size_depth_and_refs_are_counted_over_the_whole_request(settings):
    settings.SCHEMA_MAX_NODES = 1000
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(200)}}
    error = refused(tools=[tool(schema, f"t{n}") for n in range(3)])
    assert error.param == "tools[2].function.parameters" and "1,000 values" in error.message
    deep: dict = {"type": "object"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"x": deep}}
    error = refused(response_format=schema_format(deep))
    assert "deeper than 64 levels" in error.message
    settings.SCHEMA_MAX_REFS = 10
    many = {
        "$defs": {"s": {"type": "string"}},
        "properties": {f"p{i}": {"$ref": "#/$defs/s"} for i in range(11)},
    }
    assert "10 $refs" in refused(response_format=schema_format(many)).message


def test_a_17k_ref_body_is_refused_in_milliseconds():
    many = {
        "$defs": {"s": {"type": "string"}},
        "type": "object",
        "properties": {f"property_number_{i:05d}": {"$ref": "#/$defs/s"} for i in range(17_000)},
    }
    started = time.monotonic()
    error = refused(tools=[tool(many)])
    assert time.monotonic() - started < 1.0
    assert error.param == "tools[0].function.parameters"


def test_checking_schemas_has_a_deadline_for_the_whole_request(settings):
    # Within the budget but slow to check: the request's deadline ends it with a 400.
    settings.SCHEMA_CHECK_S = 0  # a deadline already past: the first keyword stops it
    error = refused(response_format=schema_format({"type": "object", "title": "fresh"}))
    assert "took over 0 s" in error.message


def test_checking_an_answer_is_bounded_in_time(settings):
    settings.ANSWER_CHECK_S = 0.05
    # 2^11 subschemas is within the budget, but applied to each of 3,000 items.
    slow = doubling(11)
    slow["type"] = "array"
    slow["items"] = {"$ref": slow.pop("$ref")}
    assert json_modes.schema_problem(slow) is None
    started = time.monotonic()
    with pytest.raises(json_modes.FormatMismatch, match="took over 0.05 s"):
        json_modes.conform(json.dumps(["x"] * 3000), schema_format(slow))
    assert time.monotonic() - started < 1.0


def test_a_ref_cycle_met_when_an_answer_is_checked_is_a_worded_failure():
    # Refused when a request brings it; a run's stored format is checked all the same.
    with pytest.raises(json_modes.FormatMismatch, match="nested too deeply"):
        json_modes.conform('"x"', schema_format({"$ref": "#"}))


def post(client, key, path: str, body: dict):
    return client.post(
        path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


@pytest.mark.django_db(transaction=True)
def test_the_doubling_schema_is_refused_through_the_api_before_a_run_starts(client, alice):
    _, key = create_key(alice, "k")
    question = [{"role": "user", "content": "Hi"}]
    response = post(
        client,
        key,
        "/v1/chat/completions",
        {"model": "fusion", "messages": question, "response_format": schema_format(doubling(16))},
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["param"] == "response_format.json_schema.schema"
    response = post(
        client,
        key,
        "/v1/chat/completions",
        {"model": "fusion", "messages": question, "tools": [tool(doubling(16))]},
    )
    assert response.json()["error"]["param"] == "tools[0].function.parameters"
    text_format = {"type": "json_schema", "name": "shape", "schema": {"$ref": "#"}}
    response = post(
        client,
        key,
        "/v1/responses",
        {"model": "fusion", "input": "Hi", "text": {"format": text_format}},
    )
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["param"] == "text.format.schema" and "never end" in error["message"]
    assert not Run.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_deeply_nested_body_is_a_400_not_a_500(client, alice):
    _, key = create_key(alice, "k")
    for depth in (300, 100_000):
        nested = "[" * depth + "]" * depth
        body = '{"model": "fusion", "messages": [], "metadata": {"x": ' + nested + "}}"
        response = client.post(
            "/v1/chat/completions",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert response.status_code == 400, response.content[:300]
        assert "nests deeper than 200 levels" in response.json()["error"]["message"]

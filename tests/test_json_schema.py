"""core/json_schema.py: a TypedDict's JSON Schema, as the judge's constrained output
and the OpenAPI document read it."""

from typing import Annotated, Literal, NotRequired, TypedDict

import pytest

from core.json_schema import UnknownType, json_schema


class Inner(TypedDict):
    name: Annotated[str, {"pattern": "^[a-z]+$"}]


class Shape(TypedDict):
    count: Annotated[int, {"minimum": 1, "maximum": 10, "description": "How many."}]
    ratio: float | None
    kind: Literal["a", "b"]
    fixed: Literal["only"]
    reason: Literal["x", "y"] | None
    items: list[Inner]
    notes: dict[str, str]
    anything: dict
    flag: NotRequired[bool]


def test_a_typeddict_becomes_an_object_whose_optional_keys_are_not_required():
    schema = json_schema(Shape)
    assert schema["type"] == "object"
    assert schema["required"] == [
        "count",
        "ratio",
        "kind",
        "fixed",
        "reason",
        "items",
        "notes",
        "anything",
    ]
    assert schema["properties"] == {
        "count": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How many."},
        "ratio": {"type": ["number", "null"]},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "fixed": {"const": "only"},
        "reason": {"type": ["string", "null"], "enum": ["x", "y", None]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
                "required": ["name"],
            },
        },
        "notes": {"type": "object", "additionalProperties": {"type": "string"}},
        "anything": {"type": "object"},
        "flag": {"type": "boolean"},
    }


def test_a_type_it_cannot_write_is_named():
    with pytest.raises(UnknownType, match="complex"):
        json_schema(complex)

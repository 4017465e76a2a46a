"""JSON Schema from the project's TypedDicts, so a shape is written once, as a type,
and its schema (for a model's constrained output, or the API's OpenAPI document) is
derived from it rather than written again beside it.

What it reads: str, int, float, bool, None, Literal, `X | None` and other unions,
list[X], dict and dict[str, X], TypedDicts (NotRequired keys left out of
`required`), and Annotated[X, {...}], whose dicts are merged into X's schema: that
is where a range, a pattern or a description goes:

    score: Annotated[int, {"minimum": 1, "maximum": 10}]
"""

import types
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

_SIMPLE: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
}


class UnknownType(TypeError):
    """A type this converter has no schema for: say which, so it can be added."""


def json_schema(annotation: Any) -> dict:
    """The JSON Schema of a type (a TypedDict, usually)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        schema = json_schema(inner)
        for extra in metadata:
            if isinstance(extra, dict):
                schema.update(extra)
        return schema
    if origin in (Required, NotRequired):
        return json_schema(get_args(annotation)[0])
    if is_typeddict(annotation):
        return _object(annotation)
    if origin is Literal:
        return _literal(get_args(annotation))
    if origin in (Union, types.UnionType):
        return _union(get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return {"type": "array", "items": json_schema(item)}
    if origin is dict:
        _, value = get_args(annotation)
        if value is Any:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": json_schema(value)}
    if annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    raise UnknownType(f"no JSON schema for {annotation!r}")


def _object(typed_dict: Any) -> dict:
    hints = get_type_hints(typed_dict, include_extras=True)
    schema: dict = {
        "type": "object",
        "properties": {name: json_schema(hint) for name, hint in hints.items()},
    }
    required = [name for name in hints if name in typed_dict.__required_keys__]
    if required:
        schema["required"] = required
    return schema


def _literal(values: tuple) -> dict:
    if len(values) == 1:
        return {"const": values[0]}
    kinds = {_SIMPLE.get(type(v)) for v in values}
    if len(kinds) == 1 and None not in kinds:
        return {"type": kinds.pop(), "enum": list(values)}
    return {"enum": list(values)}


def _union(members: tuple) -> dict:
    """`X | None` as X's schema whose type may also be null, where X has a plain
    type; any other union as oneOf."""
    others = [m for m in members if m is not type(None)]
    if len(others) == 1 and len(others) < len(members):
        schema = json_schema(others[0])
        kind = schema.get("type")
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        if isinstance(kind, str):
            return {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            return schema
    return {"oneOf": [json_schema(member) for member in members]}

"""Reading a request's `response_format` (OpenAI's text, json_object, json_schema);
errors name the field. What the panel then does with it: chat/engine/json_modes.py.
Every schema of a request (this one, the tools' parameters) is held to one budget
first (`within_budget`), before any jsonschema work."""

import re

from chat.engine import json_modes

from .errors import BadRequest

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def within_budget(data: dict) -> None:
    """BadRequest naming the schema that takes the request's schemas over their
    budget (size, depth, $refs, expansion: json_modes.budget_problem)."""
    schemas = []
    raw = data.get("tools")
    for i, tool in enumerate(raw if isinstance(raw, list) else []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and "parameters" in function:
            schemas.append((f"tools[{i}].function.parameters", function["parameters"]))
    fmt = data.get("response_format")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    if isinstance(spec, dict) and "schema" in spec:
        schemas.append(("response_format.json_schema.schema", spec["schema"]))
    if over := json_modes.budget_problem(schemas):
        param, problem = over
        raise BadRequest(
            f"`{param}` is over the budget for schemas: {problem}. Its answer could not be "
            "checked in a bounded time.",
            param,
        )


def _json_schema(spec, deadline: float) -> dict:
    param = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise BadRequest(f"`{param}` must be an object with `name` and `schema`.", param)
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(
            f"`{param}.name` must be 1 to 64 letters, digits, underscores or dashes.",
            f"{param}.name",
        )
    clean: dict = {"name": name}
    # OpenAI lets the schema out; any JSON value then matches.
    schema = spec.get("schema", {})
    if problem := json_modes.schema_problem(schema, deadline):
        raise BadRequest(
            f"`{param}.schema` is not a valid JSON Schema, so no answer could be held to "
            f"it: {problem}.",
            f"{param}.schema",
        )
    clean["schema"] = schema
    for key, kind, words in (("strict", bool, "true or false"), ("description", str, "a string")):
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise BadRequest(f"`{param}.{key}` must be {words}.", f"{param}.{key}")
        clean[key] = value
    return {"type": "json_schema", "json_schema": clean}


def read(data: dict, deadline: float) -> dict | None:
    """The request's JSON mode, or None for plain text. Its schema is checked by
    `deadline` (time.monotonic()), the request's for all its schemas."""
    raw = data.get("response_format")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("`response_format` must be an object.", "response_format")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        return _json_schema(raw.get("json_schema"), deadline)
    raise BadRequest(
        "`response_format.type` must be text, json_object or json_schema.",
        "response_format.type",
    )

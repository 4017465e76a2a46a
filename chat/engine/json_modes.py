"""The API's JSON modes (`response_format`: json_object, json_schema).

Every answer that may reach the caller as written is asked for JSON the way its
server understands: the seats (a strategy may return a seat's answer as it is) and
the synthesizer. The bundled llama.cpp servers turn a schema into a grammar; other
OpenAI-compatible servers get the caller's response_format as sent; Anthropic has no
JSON mode, so the prompt asks for it. Then the final answer is checked before the
caller gets it (`checked`): it must parse (a ``` fence a model wrapped it in is taken
off) and match the schema; otherwise the run fails with the reason in words, never
returning a Markdown-fenced block as if it were JSON.

A run's frozen configuration carries the caller's format as `response_format`.
"""

import json
import re

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from chat.models import Run

EXCERPT_CHARS = 200
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class FormatMismatch(ValueError):
    pass


def schema_problem(schema) -> str | None:
    """What makes `schema` an invalid JSON Schema (draft 2020-12), or None."""
    if not isinstance(schema, dict):
        return "a JSON Schema must be an object"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.path)
        return f"{error.message}" + (f" (at {where})" if where else "")
    # A $ref that leads nowhere (or off this document: nothing is fetched) would only
    # show when an answer is checked, after the whole panel had run.
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"the $ref {ref!r} does not resolve within the schema (none is fetched)"
    return None


def _refs(node) -> list[str]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
    return own + [ref for value in node.values() for ref in _refs(value)]


def _schema(fmt: dict) -> dict | None:
    return (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None


def instruction(fmt: dict | None) -> str:
    """The words that ask for the format, for every server (Anthropic has only these)."""
    if not fmt:
        return ""
    ask = "Reply with one JSON value and nothing else: no code fence, no text around it."
    schema = _schema(fmt)
    if schema is None:
        return ask.replace("one JSON value", "one JSON object")
    return f"{ask} It must match this JSON Schema:\n{json.dumps(schema)}"


def for_server(fmt: dict | None, ref: dict) -> dict | None:
    """The response_format to send to this model's server."""
    if not fmt:
        return None
    if ref.get("local"):
        # llama.cpp constrains its output with the schema itself (as for the judge,
        # stages.json_format); with no schema, to any JSON object.
        schema = _schema(fmt)
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return fmt


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def conform(text: str, fmt: dict) -> str:
    """The answer as JSON text of the format (a wrapping ``` fence taken off), or
    FormatMismatch saying what is wrong, with the start of the answer."""
    body = text.strip()
    if fenced := _FENCE.fullmatch(body):
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except ValueError as error:
        problem = getattr(error, "msg", str(error))
        raise FormatMismatch(
            f"it is not valid JSON ({problem}). It began: “{_excerpt(text)}”"
        ) from None
    schema = _schema(fmt)
    if schema is None:
        if not isinstance(value, dict):
            raise FormatMismatch(
                "it is JSON but not an object, as json_object requires. It began: "
                f"“{_excerpt(text)}”"
            )
        return body
    try:
        wrong = best_match(Draft202012Validator(schema).iter_errors(value))
    except Unresolvable as error:  # schema_problem refuses these before a run starts
        raise FormatMismatch(f"its schema could not be applied ({error})") from None
    if wrong is not None:
        where = "/".join(str(p) for p in wrong.absolute_path) or "the top level"
        name = (fmt.get("json_schema") or {}).get("name", "")
        raise FormatMismatch(
            f"it does not match the schema `{name}`: {wrong.message} (at {where}). "
            f"It began: “{_excerpt(text)}”"
        )
    return body


def checked(run: Run, status: str, reason: str, detail: str) -> tuple[str, str, str]:
    """A finished run's final answer held to the caller's format (in the run's
    database thread): saved as clean JSON, or the run fails saying why. Takes and
    returns (status, failure reason, detail)."""
    fmt = run.config.get("response_format")
    final = run.final_answer
    if not fmt or status != Run.Status.DONE or final is None or final.client_tool_calls:
        return status, reason, detail  # tool calls carry no content to check
    try:
        clean = conform(final.text, fmt)
    except FormatMismatch as mismatch:
        words = f"The final answer, by {final.model_name}, did not match the response_format"
        return Run.Status.FAILED, Run.Failure.FORMAT_MISMATCH, f"{words}: {mismatch}"
    if clean != final.text:
        final.text = clean
        final.save(update_fields=["text"])
    return status, reason, detail

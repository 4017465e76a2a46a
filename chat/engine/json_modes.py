"""The API's JSON modes (`response_format`: json_object, json_schema).

Every answer that may reach the caller as written is asked for JSON the way its
server understands: the seats (a strategy may return a seat's answer as it is) and
the synthesizer. The bundled llama.cpp servers turn a schema into a grammar; other
OpenAI-compatible servers get the caller's response_format as sent; Anthropic has no
JSON mode, so the prompt asks for it. Then the final answer is checked before the
caller gets it (`checked`): it must parse (a ``` fence a model wrapped it in is taken
off) and match the schema; otherwise the run fails with the reason in words, never
returning a Markdown-fenced block as if it were JSON.

A caller's schemas cost what they say only within a budget (`budget_problem`): their
size, depth and `$ref`s are counted, and so are the subschemas a full expansion would
visit (each `$ref` followed, its count remembered), by plain walks that stop at the
caps. A request is held to it before any jsonschema work (a schema of 2^n subschemas
in 1 KB would otherwise take seconds to check, then longer to check an answer against,
and a `$ref` that leads back to itself without moving into the answer would never
end). Checking a schema, and an answer against it, has a time bound besides
(`SCHEMA_CHECK_S`, `ANSWER_CHECK_S`: the clock is read at every keyword), and a
RecursionError ends in words.

A run's frozen configuration carries the caller's format as `response_format`.
"""

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from chat.models import Run

EXCERPT_CHARS = 200
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class FormatMismatch(ValueError):
    pass


# Keywords whose subschemas apply to the same value (in place), and those that apply
# to the values inside it (into content): a $ref cycle through the latter goes one
# level deeper into the answer each time round, so it ends with the answer.
_IN_PLACE = {"not", "if", "then", "else", "allOf", "anyOf", "oneOf", "dependentSchemas"}
_IN_PLACE |= {"dependencies"}
_INTO_CONTENT = {"additionalProperties", "items", "contains", "unevaluatedItems"}
_INTO_CONTENT |= {"unevaluatedProperties", "propertyNames", "prefixItems", "additionalItems"}
_INTO_CONTENT |= {"properties", "patternProperties"}
_MAPS = {"properties", "patternProperties", "dependentSchemas", "dependencies"}


@dataclass(frozen=True)
class Budget:
    """What a request's schemas may cost together (settings SCHEMA_MAX_*)."""

    nodes: int
    depth: int
    refs: int
    expansion: int

    @classmethod
    def from_settings(cls) -> "Budget":
        return cls(
            nodes=settings.SCHEMA_MAX_NODES,
            depth=settings.SCHEMA_MAX_DEPTH,
            refs=settings.SCHEMA_MAX_REFS,
            expansion=settings.SCHEMA_MAX_EXPANSION,
        )


class _Over(Exception):
    pass


def budget_problem(schemas: list[tuple[str, object]]) -> tuple[str, str] | None:
    """(field, what is over) for the first of a request's schemas, named by their
    fields, that takes the request over its budget; None when all fit. Plain walks
    that stop at the caps: cheap before any jsonschema work."""
    budget = Budget.from_settings()
    spent = {"nodes": 0, "refs": 0, "expansion": 0}
    for field, schema in schemas:
        try:
            _count(schema, budget, spent)
            if isinstance(schema, dict):
                _expand(schema, budget, spent)
        except _Over as over:
            return field, str(over)
    return None


def _count(schema, budget: Budget, spent: dict) -> None:
    """Nodes (every value), depth and $refs, without recursion (a deep schema must
    not raise RecursionError here)."""
    stack = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        spent["nodes"] += 1
        if spent["nodes"] > budget.nodes:
            raise _Over(
                f"the schemas of this request have over {budget.nodes:,} values together, the limit"
            )
        if depth > budget.depth:
            raise _Over(f"it nests deeper than {budget.depth} levels, the limit")
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) or isinstance(node.get("$dynamicRef"), str):
                spent["refs"] += 1
                if spent["refs"] > budget.refs:
                    raise _Over(
                        f"the schemas of this request hold over {budget.refs:,} $refs "
                        "together, the limit"
                    )
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def _expand(schema: dict, budget: Budget, spent: dict) -> None:
    """Count the subschemas that checking one value would visit, every $ref followed
    (a target's count remembered, so a schema that doubles at each level costs its
    own size to count, not 2^n), stopping at the cap. A $ref back to a schema being
    expanded is a cycle: fine when it moved into the value's content since (it ends
    with the answer), refused when it did not (it would never end)."""
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    try:
        _Expansion(budget, spent).visit(schema, resolver, 0, 1)
    except RecursionError:
        raise _Over("it nests too deeply once its $refs are followed") from None


class _Expansion:
    """One schema's expansion walk (see `_expand`)."""

    def __init__(self, budget: Budget, spent: dict) -> None:
        self.budget, self.spent = budget, spent
        self.memo: dict[int, int] = {}
        self.entered: dict[int, int] = {}  # schemas being expanded → content depth at entry
        self.most = 2 * budget.depth  # levels once $refs are followed

    def add(self, count: int) -> None:
        self.spent["expansion"] += count
        if self.spent["expansion"] > self.budget.expansion:
            raise _Over(
                f"checking an answer against it would visit over {self.budget.expansion:,} "
                "subschemas once its $refs are followed, the limit"
            )

    def follow(self, ref: str, resolver, content: int, level: int) -> None:
        try:
            resolved = resolver.lookup(ref)
        except Unresolvable:
            return  # schema_problem names it
        target = resolved.contents
        key = id(target)
        if key in self.entered:
            if self.entered[key] == content:
                raise _Over(
                    f"the $ref {ref!r} leads back to a schema it is part of without moving "
                    "into the answer's content, so checking any answer would never end"
                )
            return
        if key in self.memo:
            self.add(self.memo[key])
            return
        before = self.spent["expansion"]
        self.entered[key] = content
        self.visit(target, resolved.resolver, content, level + 1)
        del self.entered[key]
        self.memo[key] = self.spent["expansion"] - before

    def visit(self, node, resolver, content: int, level: int) -> None:
        if isinstance(node, list):
            for item in node:
                self.visit(item, resolver, content, level)
            return
        if not isinstance(node, dict):
            return  # true, false: nothing to visit
        if level > self.most:
            raise _Over(f"it nests deeper than {self.most} levels once its $refs are followed")
        self.add(1)
        if isinstance(node.get("$id"), str):
            resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
        for keyword in ("$ref", "$dynamicRef"):
            if isinstance(node.get(keyword), str):
                self.follow(node[keyword], resolver, content, level)
        for keyword, value in node.items():
            if keyword not in _IN_PLACE and keyword not in _INTO_CONTENT:
                continue
            deeper = content + (keyword in _INTO_CONTENT)
            children = value.values() if keyword in _MAPS and isinstance(value, dict) else [value]
            for child in children:
                self.visit(child, resolver, deeper, level + 1)


def schema_problem(schema, deadline: float | None = None) -> str | None:
    """What makes `schema` an invalid JSON Schema (draft 2020-12), or None. Within
    the budget first (a request's parser checks all its schemas together, then each
    with one deadline for them all); a schema seen lately is not checked again."""
    if not isinstance(schema, dict):
        return "a JSON Schema must be an object"
    if over := budget_problem([("", schema)]):
        return over[1]
    key = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).digest()
    with _seen_lock:
        if key in _seen:
            _seen.move_to_end(key)
            return _seen[key]
    if deadline is None:
        deadline = time.monotonic() + settings.SCHEMA_CHECK_S
    try:
        problem = _problem(schema, deadline)
    except _TooSlow:
        return (
            f"checking it took over {settings.SCHEMA_CHECK_S} s with the request's other "
            "schemas, the limit: send a smaller schema"
        )  # not remembered: with fewer schemas beside it, it may fit
    with _seen_lock:
        _seen[key] = problem
        while len(_seen) > SEEN_SCHEMAS:
            _seen.popitem(last=False)
    return problem


# Schemas checked lately (by their canonical JSON's hash): a caller sends the same
# tools with every request, and a check costs about 0.1 ms a subschema.
SEEN_SCHEMAS = 512
_seen: OrderedDict[bytes, str | None] = OrderedDict()
_seen_lock = threading.Lock()


def _problem(schema: dict, deadline: float) -> str | None:
    meta = _bounded(deadline)(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    for wrong in meta.iter_errors(schema):
        error = SchemaError.create_from(wrong)
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
        # json_calls.json_format); with no schema, to any JSON object.
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
    limit = settings.ANSWER_CHECK_S
    try:
        wrong = best_match(_bounded(time.monotonic() + limit)(schema).iter_errors(value))
    except Unresolvable as error:  # schema_problem refuses these before a run starts
        raise FormatMismatch(f"its schema could not be applied ({error})") from None
    except _TooSlow:
        raise FormatMismatch(
            f"checking it against the schema took over {limit} s, the limit. "
            f"It began: “{_excerpt(text)}”"
        ) from None
    except RecursionError:
        raise FormatMismatch(
            "checking it against the schema nested too deeply (a $ref that leads back "
            f"to itself?). It began: “{_excerpt(text)}”"
        ) from None
    if wrong is not None:
        where = "/".join(str(p) for p in wrong.absolute_path) or "the top level"
        name = (fmt.get("json_schema") or {}).get("name", "")
        raise FormatMismatch(
            f"it does not match the schema `{name}`: {wrong.message} (at {where}). "
            f"It began: “{_excerpt(text)}”"
        )
    return body


class _TooSlow(Exception):
    pass


def _bounded(deadline: float):
    """Draft 2020-12's validator with the clock read at every keyword it applies:
    the whole of the work passes through them, so past `deadline` it stops."""

    def guarded(check):
        def keyword(validator, value, instance, schema):
            if time.monotonic() > deadline:
                raise _TooSlow
            return check(validator, value, instance, schema)

        return keyword

    keywords = {name: guarded(check) for name, check in Draft202012Validator.VALIDATORS.items()}
    return validators.extend(Draft202012Validator, keywords)


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

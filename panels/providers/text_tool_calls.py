"""Tool calls a model wrote in its text, turned into real ToolCall events.

Small local models (the bundled Qwen2.5-Coder) are offered tools in OpenAI's shape but
answer with the call written out: Qwen's own `<tool_call>{…}</tool_call>`, or, more
often, a fenced or bare JSON object `{"name": …, "arguments": …}`. llama.cpp's
template-driven parser (the server runs with `--jinja`) reads only the tagged form, and
the 1.5B writes the fenced one even when a grammar asks for a call (docs/LOCAL_MODELS.md).

The rule, strict on purpose so that prose is never mistaken for a call:
- only when tools were offered, and only an object naming an offered tool, with
  exactly the keys `name` and `arguments` (an object, or a string holding one);
- the calls must be the message's last content: one or more calls, with nothing but
  white space between and after them. A JSON object followed by more prose is an
  example inside prose, and stays text; so does anything malformed or unknown.
- The text before the calls stays as the answer's text (without its trailing white
  space); a message that is only calls has no text.

While streaming, text that may be the start of a call (`<`, a fence, a `{`, and the
white space before them) is held back until it is decided, so a call never reaches
the answer's column as text. What is held is bounded: past the limit on one call's
arguments it cannot be a call, and is passed on as text.
"""

import json
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from .base import Event, Finish, StreamLimits, TextDelta, ToolCall

OPEN_TAG, CLOSE_TAG, FENCE = "<tool_call>", "</tool_call>", "```"
FENCE_LANGUAGES = ("", "json", "tool_call")
_SPACE = re.compile(r"\s*")
# Characters whose arrival may settle a held candidate; text without any of them
# arriving while a call's JSON is open cannot, so the tail is not parsed again.
_SETTLING = set("}]>`")


def offered_names(tools: Iterable[dict]) -> frozenset[str]:
    """The names of tools given in OpenAI's function format."""
    return frozenset(
        name
        for tool in tools
        if isinstance(name := (tool.get("function") or {}).get("name"), str) and name
    )


@dataclass(frozen=True)
class _Verdict:
    state: str  # "calls": complete calls up to the end; "open": may still become calls; "no"
    calls: tuple[tuple[str, str], ...] = ()  # (name, arguments as JSON text)


_Call = tuple[str, str]  # (name, arguments as JSON text)
_NO = _Verdict("no")
_OPEN = _Verdict("open")


def _after_space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def _json_end(text: str, start: int) -> int | None:
    """Where the JSON object opening at `start` ends (one past its `}`); None when the
    text ends first; -1 when brackets do not match."""
    stack: list[str] = []
    in_string = escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack or stack.pop() != char:
                return -1
            if not stack:
                return i + 1
    return None


def _call_of(raw: str, names: frozenset[str]) -> tuple[str, str] | None:
    """(name, arguments) when `raw` is a call of an offered tool, else None."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {"name", "arguments"}:
        return None
    name, arguments = value["name"], value["arguments"]
    if not isinstance(name, str) or name not in names:
        return None
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        return name, arguments
    if isinstance(arguments, dict):
        return name, json.dumps(arguments, ensure_ascii=False)
    return None


def _object(text: str, at: int, names: frozenset[str]) -> tuple[_Verdict, int, "_Call | None"]:
    """A call's JSON object starting at `at`: (verdict, end, call)."""
    if at >= len(text):
        return _OPEN, at, None
    if text[at] != "{":
        return _NO, at, None
    after = _after_space(text, at + 1)
    if after < len(text) and text[after] != '"':
        return _NO, at, None  # `{1: 2}`, `{x}`: code or prose, never a call's object
    end = _json_end(text, at)
    if end is None:
        return _OPEN, at, None
    if end < 0 or (call := _call_of(text[at:end], names)) is None:
        return _NO, at, None
    return _Verdict("calls"), end, call


def _literal(text: str, at: int, literal: str) -> str:
    """Whether `literal` is at `at`: "yes", "open" (the text ends inside it) or "no"."""
    part = text[at : at + len(literal)]
    if part == literal:
        return "yes"
    return "open" if literal.startswith(part) and at + len(part) == len(text) else "no"


def _one_call(text: str, at: int, names: frozenset[str]) -> tuple[_Verdict, int, "_Call | None"]:
    """One call in any of its three forms, starting at `at`."""
    first = text[at]
    if first == "<":
        found = _literal(text, at, OPEN_TAG)
        if found != "yes":
            return (_OPEN if found == "open" else _NO), at, None
        verdict, end, call = _object(text, _after_space(text, at + len(OPEN_TAG)), names)
        if verdict.state != "calls":
            return verdict, end, None
        close = _after_space(text, end)
        if close == len(text):
            return _Verdict("calls"), close, call  # a last call may end without its tag
        found = _literal(text, close, CLOSE_TAG)
        if found != "yes":
            return (_OPEN if found == "open" else _NO), at, None
        return _Verdict("calls"), close + len(CLOSE_TAG), call
    if first == "`":
        found = _literal(text, at, FENCE)
        if found != "yes":
            return (_OPEN if found == "open" else _NO), at, None
        line_end = text.find("\n", at + len(FENCE))
        if line_end < 0:
            language = text[at + len(FENCE) :].strip().lower()
            maybe = any(known.startswith(language) for known in FENCE_LANGUAGES)
            return (_OPEN if maybe else _NO), at, None
        if text[at + len(FENCE) : line_end].strip().lower() not in FENCE_LANGUAGES:
            return _NO, at, None
        verdict, end, call = _object(text, _after_space(text, line_end), names)
        if verdict.state != "calls":
            return verdict, end, None
        close = _after_space(text, end)
        found = _literal(text, close, FENCE) if close < len(text) else "open"
        if found != "yes":
            return (_OPEN if found == "open" else _NO), at, None
        return _Verdict("calls"), close + len(FENCE), call
    return _object(text, at, names)


def _tail(text: str, at: int, names: frozenset[str]) -> _Verdict:
    """Whether text[at:] is calls and white space only (or may still become so)."""
    calls: list[_Call] = []
    position = at
    while True:
        position = _after_space(text, position)
        if position == len(text):
            return _Verdict("calls", tuple(calls)) if calls else _OPEN
        verdict, position, call = _one_call(text, position, names)
        if verdict.state != "calls" or call is None:
            return verdict
        calls.append(call)


DEFAULT_LIMITS = StreamLimits()
_STARTS = re.compile(r"\s*[<`{]")


class TextToolCalls:
    """Reads one answer's text as it streams: `feed` returns the text that is decided
    to be text; `finish` returns the rest of it and the calls found at its end."""

    def __init__(self, names: Iterable[str], limits: StreamLimits = DEFAULT_LIMITS):
        self.names = frozenset(names)
        self.limit = limits.tool_argument_chars + 1024  # a call's JSON and its wrapping
        self.max_calls = limits.tool_calls
        self.held = ""  # text not yet decided: it begins where a call may begin
        self.verdict = _OPEN

    def feed(self, text: str) -> str:
        if not self.names:
            return text
        inside = self.verdict.state == "open" and len(self.held) >= 64 and self.held.strip()
        self.held += text
        if inside and _SETTLING.isdisjoint(text):
            return ""  # still inside a call's JSON: nothing new can be decided
        return self._release(final=False)

    def finish(self) -> tuple[str, list[tuple[str, str]]]:
        """The text still held, and the calls (name, arguments) the answer ends with."""
        if not self.names:
            return "", []
        text = self._release(final=True)
        if self.verdict.state == "calls" and self.held:
            calls = list(self.verdict.calls)
            self.held = ""
            return text, calls
        text += self.held
        self.held = ""
        return text, []

    def _release(self, final: bool) -> str:
        """Pass on everything before the earliest place a call may begin."""
        out = []
        start = 0
        while True:
            match = _STARTS.search(self.held, start)
            if match is None:
                # Trailing white space is held: a call may follow it.
                kept = len(self.held.rstrip()) if not final else len(self.held)
                out.append(self.held[:kept])
                self.held = self.held[kept:]
                self.verdict = _OPEN
                return "".join(out)
            verdict = _tail(self.held, match.start(), self.names)
            too_long = len(self.held) - match.start() > self.limit
            if verdict.state == "calls" and len(verdict.calls) > self.max_calls:
                verdict = _NO
            if verdict.state == "no" or too_long or (final and verdict.state == "open"):
                start = match.end()  # not a call from here: look for the next start
                continue
            out.append(self.held[: match.start()])
            self.held = self.held[match.start() :]
            self.verdict = verdict
            return "".join(out)


def call_id() -> str:
    return f"call_{secrets.token_hex(8)}"


async def parsed(
    events: AsyncIterator[Event], tools: Iterable[dict], limits: StreamLimits = DEFAULT_LIMITS
) -> AsyncIterator[Event]:
    """A provider's events with the tool calls written in its text made real: held-back
    text is decided before the first event that is not text, and a Finish after text
    calls says `tool_calls`."""
    reader = TextToolCalls(offered_names(tools), limits)
    found = False
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if text := reader.feed(event.text):
                    yield TextDelta(text)
                continue
            if reader.held:
                text, calls = reader.finish()
                if text:
                    yield TextDelta(text)
                for name, arguments in calls:
                    found = True
                    yield ToolCall(id=call_id(), name=name, arguments=arguments)
            if isinstance(event, Finish) and found and event.reason == "stop":
                event = Finish("tool_calls")
            yield event
        text, calls = reader.finish()  # a stream that ended without Usage or Finish
        if text:
            yield TextDelta(text)
        for name, arguments in calls:
            yield ToolCall(id=call_id(), name=name, arguments=arguments)
    finally:
        await events.aclose()  # type: ignore[attr-defined]

"""Tool calls written in a model's text (panels/providers/text_tool_calls.py): what is a
call, what stays text, and the same verdict however the stream is split."""

import asyncio
import json
import random

import pytest

from panels.providers import Finish, StreamLimits, TextDelta, ToolCall, Usage
from panels.providers.text_tool_calls import TextToolCalls, offered_names, parsed

NAMES = ("run_python", "web_search")
PRODUCT = {"code": "print(123456789 * 987654321)"}
# What the bundled Qwen 1.5B writes, verbatim (docs/LOCAL_MODELS.md).
FENCED = (
    '```json\n{\n  "name": "run_python",\n  "arguments": {\n'
    '    "code": "print(123456789 * 987654321)"\n  }\n}\n```'
)
TAGGED = '<tool_call>\n{"name": "run_python", "arguments": {"code": "print(6 * 7)"}}\n</tool_call>'


def read(text: str, names=NAMES, chunks: list[str] | None = None, limits=None):
    """(text passed on, calls as (name, arguments object)) for `text` streamed in `chunks`."""
    reader = TextToolCalls(names, limits or StreamLimits())
    shown = "".join(reader.feed(chunk) for chunk in (chunks or [text]))
    rest, calls = reader.finish()
    return shown + rest, [(name, json.loads(arguments)) for name, arguments in calls]


def test_the_fenced_json_form_the_1_5b_writes_is_a_call():
    assert read(FENCED) == ("", [("run_python", PRODUCT)])


def test_qwens_tagged_form_is_a_call_with_or_without_its_closing_tag():
    assert read(TAGGED) == ("", [("run_python", {"code": "print(6 * 7)"})])
    unclosed = TAGGED.removesuffix("</tool_call>")
    assert read(unclosed) == ("", [("run_python", {"code": "print(6 * 7)"})])


def test_a_bare_object_and_arguments_given_as_a_json_string():
    bare = json.dumps({"name": "run_python", "arguments": json.dumps(PRODUCT)})
    text, calls = read(bare)
    assert (text, calls) == ("", [("run_python", PRODUCT)])
    reader = TextToolCalls(NAMES)
    reader.feed(bare)
    assert reader.finish()[1] == [("run_python", json.dumps(PRODUCT))]  # kept as written


def test_the_text_before_the_call_stays_the_answers_text():
    text = "I will compute it.\n\n" + FENCED + "\n"
    assert read(text) == ("I will compute it.", [("run_python", PRODUCT)])


def test_two_calls_in_a_row_are_two_calls():
    search = '<tool_call>{"name": "web_search", "arguments": {"query": "x"}}</tool_call>'
    text, calls = read("Two things.\n" + TAGGED + "\n" + search)
    assert text == "Two things."
    assert calls == [("run_python", {"code": "print(6 * 7)"}), ("web_search", {"query": "x"})]
    assert read(FENCED + "\n\n" + FENCED)[1] == [("run_python", PRODUCT)] * 2


@pytest.mark.parametrize(
    "text",
    [
        # a tool that was not offered
        '{"name": "rm_rf", "arguments": {"path": "/"}}',
        '<tool_call>{"name": "teleport", "arguments": {}}</tool_call>',
        # malformed JSON, or not the call's shape
        '```json\n{"name": "run_python", "arguments": {"code": "print(1)"\n```',
        '{"name": "run_python", "arguments": {"code": "print(1)"}',
        '{"name": "run_python", "arguments": "not json"}',
        '{"name": "run_python", "arguments": [1, 2]}',
        '{"name": "run_python"}',
        '{"name": "run_python", "arguments": {}, "stdout": "42"}',
        '{"name": "run_python", "arguments": {}}}',
        # a call shown inside prose: more text follows it
        'Call it like this: {"name": "run_python", "arguments": {"code": "1"}} and read it.',
        FENCED + "\n\nThat prints the product.",
        # a fence of another language, and code that is not JSON
        '```python\n{"name": "run_python", "arguments": {}}\n```',
        "def f():\n    return {1: 2}",
        "Use <b>bold</b> and `code` and {x}.",
    ],
)
def test_anything_else_stays_text_as_written(text):
    assert read(text) == (text, [])


def test_nothing_is_a_call_when_no_tools_were_offered():
    assert read(FENCED, names=()) == (FENCED, [])
    assert offered_names([{"type": "function", "function": {"name": "run_python"}}]) == {
        "run_python"
    }


def test_past_the_argument_limit_it_is_text_and_no_longer_held():
    limits = StreamLimits(tool_argument_chars=100)
    long = json.dumps({"name": "run_python", "arguments": {"code": "x" * 2000}})
    reader = TextToolCalls(NAMES, limits)
    shown = "".join(reader.feed(long[i : i + 50]) for i in range(0, len(long), 50))
    assert len(reader.held) < 100 + 1024 + 50 and shown  # passed on as it grew
    rest, calls = reader.finish()
    assert (shown + rest, calls) == (long, [])


def test_a_call_is_held_back_until_decided_and_prose_is_not():
    reader = TextToolCalls(NAMES)
    assert reader.feed("The answer is ") == "The answer is"  # the space may precede a call
    assert reader.feed("42.") == " 42."
    assert reader.feed("\n```json\n{") == ""
    assert reader.feed('"name": "run_python", "arguments": {}}\n``') == ""
    assert reader.feed("`") == ""  # a complete call: held until the end says more
    assert reader.finish() == ("", [("run_python", "{}")])


CASES = [
    FENCED,
    "I will compute it.\n" + FENCED,
    TAGGED + "\n" + TAGGED,
    'Use {"name": "run_python", "arguments": {}} like so.',
    '{"name": "rm_rf", "arguments": {}}',
    "Braces {in prose} and a fence:\n```python\nprint({})\n```\n",
    '<tool_call>{"name": "run_python", "arguments": "{\\"code\\": \\"print(\'}\')\\"}"}',
    "Plain text with < and ` and { but no call.",
]


@pytest.mark.parametrize("text", CASES)
def test_every_split_of_the_stream_gives_the_same_result(text):
    """Property: the verdict does not depend on where the upstream cut its deltas —
    every single cut point, then many random splittings (fixed seed)."""
    whole = read(text)
    for cut in range(1, len(text)):
        assert read(text, chunks=[text[:cut], text[cut:]]) == whole, cut
    assert read(text, chunks=list(text)) == whole  # one character at a time
    rng = random.Random(24)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert read(text, chunks=chunks) == whole, cuts


def test_a_streams_text_calls_become_tool_call_events():
    async def upstream():
        for piece in ["Let me run it.\n", FENCED[:20], FENCED[20:]]:
            yield TextDelta(piece)
        yield Usage(10, 20)
        yield Finish("stop")

    async def events():
        tools = [{"type": "function", "function": {"name": "run_python"}}]
        return [event async for event in parsed(upstream(), tools)]

    got = asyncio.run(events())
    assert [type(e) for e in got] == [TextDelta, ToolCall, Usage, Finish]
    assert got[0].text == "Let me run it."
    assert (got[1].name, json.loads(got[1].arguments)) == ("run_python", PRODUCT)
    assert got[1].id.startswith("call_") and got[3].reason == "tool_calls"

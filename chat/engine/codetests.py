"""The tests a code question states, and a candidate's code found in its answer.

A question states its examples in many forms, and a parser that reads only doctest's
`>>>` finds tests in about a third of HumanEval's prompts (docs/STRATEGIES.md): so
this reads `>>> f(x)` with the result on the following line, `assert` lines,
`f(x) == y`, `f(x) ➞ y` (also `->`, `=>`, `→`) and prose such as "f(x) should return
y". A test that does not parse as Python is left out and counted as broken.

Nothing here runs code: `harness` writes the program that the sandbox runs
(chat/engine/verification.py), one program per candidate with every test in it.
"""

import ast
import json
import re
from dataclasses import dataclass

_SIGNATURE = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_IMPORT = re.compile(r"^(?:from\s+[\w.]+\s+import\s+[^\n]+|import\s+[\w., ]+)$", re.MULTILINE)
_ARROW = r"(?:#\s*)?(?:➞|→|==>|->|=>|==|=(?!=)|\breturns?\b)"
_PROSE = r"(?:should\s+return|should\s+be|returns?|gives?|is)\b"
# "For lst = [1, 2] the output should be 3"; "Input: arr = [1, 2], k = 1 … Output: [2]"
_FOR = re.compile(
    r"^\s*for\s+(.+?),?\s+(?:the\s+)?(?:output|result)\s+(?:should\s+be|is)\s+(.+)$",
    re.IGNORECASE,
)
_INPUT = re.compile(r"^\s*input\s*:\s*(.*)$", re.IGNORECASE)
_OUTPUT = re.compile(r"^\s*output\s*:\s*(.+)$", re.IGNORECASE)
TEST_LIMIT = 24  # tests per question, at most: every one runs in every candidate


@dataclass(frozen=True)
class Test:
    """One stated example: `call` evaluated and compared with `expected`; or, for an
    `assert` that is not a comparison, `statement` executed. `printed` marks a
    doctest's expected output (compared as Python's repr when it is not a value)."""

    source: str  # the line as the question states it
    call: str = ""
    expected: str = ""
    statement: str = ""
    printed: bool = False

    def as_dict(self) -> dict:
        return {
            "call": self.call,
            "expected": self.expected,
            "statement": self.statement,
            "printed": self.printed,
        }


@dataclass
class Found:
    tests: list[Test]
    broken: list[str]  # stated examples that are not valid Python


def entry_points(question: str) -> list[str]:
    """The functions the question asks for (`def name(`), in order."""
    return list(dict.fromkeys(_SIGNATURE.findall(question)))


def _parses(expression: str) -> bool:
    try:
        ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return False
    return True


def _call_at(line: str, start: int) -> int | None:
    """The end of the call whose name starts at `start` (its closing parenthesis + 1)."""
    depth, quote, i = 0, "", line.find("(", start)
    while 0 <= i < len(line):
        char = line[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _value(text: str) -> str:
    """The expected value at the start of `text`: the longest prefix that parses,
    trailing punctuation and prose dropped ("6." or "6, and f(0) is 0")."""
    text = text.strip().rstrip(".;")
    for end in range(len(text), 0, -1):
        head = text[:end].strip().rstrip(".,;")
        if head and _parses(head) and (end == len(text) or text[end] in " ,.;)"):
            return head
    return ""


def _comparison(expression: str) -> tuple[str, str] | None:
    """(left, right) of `left == right`, or None."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.ops[0], ast.Eq):
        left = ast.get_source_segment(expression.strip(), tree.left)
        right = ast.get_source_segment(expression.strip(), tree.comparators[0])
        if left and right:
            return left, right
    return None


def _result_lines(lines: list[str], j: int) -> str:
    """A doctest's expected output: its next line, or as many lines as a value
    wrapped over several takes (a long list), up to a blank line, the next `>>>` or
    the docstring's end."""
    result: list[str] = []
    while j < len(lines):
        stripped = lines[j].strip()
        if not stripped or stripped.startswith(">>>") or stripped.startswith(('"""', "'''")):
            break
        result.append(stripped)
        if _parses(" ".join(result)):
            return " ".join(result)
        j += 1
    return result[0] if result else ""


def _doctests(lines: list[str]) -> tuple[list[Test], list[str]]:
    tests, broken = [], []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith(">>>"):
            continue
        call = stripped[3:].strip()
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith("..."):
            call += "\n" + lines[j].strip()[3:].strip()
            j += 1
        result = _result_lines(lines, j)
        if not _parses(call):
            if not call.startswith(("import ", "from ")):
                broken.append(stripped)
            continue
        pair = _comparison(call)
        if pair and result in ("", "True"):  # ">>> f(x) == y": the comparison is the test
            tests.append(Test(stripped, call=pair[0], expected=pair[1]))
        elif result and not result.startswith("Traceback"):
            tests.append(Test(stripped, call=call, expected=result, printed=True))
    return tests, broken


def _asserts(lines: list[str]) -> tuple[list[Test], list[str]]:
    tests, broken = [], []
    for line in lines:
        stripped = line.strip()
        if not re.match(r"assert\b", stripped):
            continue
        body = stripped[len("assert") :].strip()
        if not _parses(body):
            if not re.search(_ARROW, body):  # "assert f(x) => y" is a stated pair
                broken.append(stripped)
            continue
        if pair := _comparison(body):
            tests.append(Test(stripped, call=pair[0], expected=pair[1]))
            continue
        tests.append(Test(stripped, statement=f"assert {body}"))
    return tests, broken


def _stated_pairs(lines: list[str], names: list[str]) -> list[Test]:
    """`f(x) == y`, `f(x) ➞ y` and prose such as "f(x) should return y"."""
    called = "|".join(map(re.escape, names)) if names else r"[A-Za-z_]\w*"
    start = re.compile(rf"(?<![\w.])({called})\s*\(")
    tests = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith((">>>", "def ", "...")):
            continue
        for match in start.finditer(line):
            end = _call_at(line, match.start())
            if end is None:
                continue
            rest = re.match(rf"\s*(?:{_ARROW}|{_PROSE})\s*(.+)", line[end:], re.IGNORECASE)
            if not rest or (expected := _value(rest.group(1))) == "":
                continue
            call = line[match.start() : end]
            if _parses(call):
                tests.append(Test(stripped, call=call, expected=expected))
    return tests


def _keyword_call(name: str, given: str) -> str:
    """`f(lst=[1, 2])` from "lst = [1, 2]", `f(12)` from "12"; "" when it is not Python."""
    for call in (f"{name}({given.strip().rstrip(',')})", f"{name}({given.strip()})"):
        if _parses(call):
            return call
    return ""


def _described(lines: list[str], names: list[str]) -> list[Test]:
    """Examples described in prose: "For x = … the output should be …", and
    "Input: …" followed by "Output: …" (the function asked for, called by keyword)."""
    if len(names) != 1:
        return []
    tests, given = [], None
    for line in lines:
        if match := _FOR.match(line):
            call, expected = _keyword_call(names[0], match.group(1)), _value(match.group(2))
            if call and expected:
                tests.append(Test(line.strip(), call=call, expected=expected))
        elif match := _INPUT.match(line):
            given = match.group(1).strip() or None
        elif (match := _OUTPUT.match(line)) and given is not None:
            call = _keyword_call(names[0], given)
            expected = _value(match.group(1).split("#")[0])
            if call and expected:
                source = f"Input: {given} Output: {expected}"
                tests.append(Test(source, call=call, expected=expected))
            given = None
    return tests


def find_tests(question: str) -> Found:
    """Every test the question states, each once, in the order stated."""
    lines = question.splitlines()
    names = entry_points(question)
    doc, broken_doc = _doctests(lines)
    asserted, broken_asserts = _asserts(lines)
    found: dict[tuple, Test] = {}
    for test in [*doc, *asserted, *_stated_pairs(lines, names), *_described(lines, names)]:
        key = (test.call.replace(" ", ""), test.expected.replace(" ", ""), test.statement)
        found.setdefault(key, test)
    return Found(list(found.values())[:TEST_LIMIT], broken_doc + broken_asserts)


def is_code_question(question: str) -> bool:
    """A function signature to write, or examples stated as doctests or asserts."""
    if entry_points(question):
        return True
    return bool(re.search(r"^\s*(?:>>>|assert\s)", question, re.MULTILINE))


def code_in(answer: str, names: list[str]) -> str | None:
    """The candidate's code in an answer: the fenced block that defines the function
    asked for (else the first fenced Python), or the whole answer when it is code."""
    blocks = [body for lang, body in _FENCE.findall(answer) if lang.lower() in ("", "python", "py")]
    for name in names:
        for body in blocks:
            if re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", body, re.MULTILINE):
                return body
    if blocks:
        return blocks[0]
    try:
        ast.parse(answer)
    except (SyntaxError, ValueError):
        return None
    return answer if _SIGNATURE.search(answer) else None


def question_imports(question: str) -> str:
    """The question's own imports (`from typing import List`): a candidate that
    writes only the function still needs them."""
    return "\n".join(_IMPORT.findall(question))


HARNESS = r"""
import io, json, signal, sys
_out = sys.stdout
class _Sink(io.TextIOBase):
    def write(self, text):
        return len(text)  # what the candidate prints is not its result
sys.stdout = _Sink()
def _emit(record):
    _out.write(MARK + json.dumps(record) + "\n")
    _out.flush()
def _alarm(*_):
    raise TimeoutError("ran past its time limit")
signal.signal(signal.SIGALRM, _alarm)
_ns = {"__name__": "candidate"}
try:
    signal.setitimer(signal.ITIMER_REAL, LOAD_S)
    exec(compile(CODE, "candidate", "exec"), _ns)
    signal.setitimer(signal.ITIMER_REAL, 0)
except BaseException as _e:
    signal.setitimer(signal.ITIMER_REAL, 0)
    _emit({"load": type(_e).__name__ + ": " + str(_e)[:200]})
    raise SystemExit(0)
_emit({"load": "ok"})
for _i, _t in enumerate(TESTS):
    _r = {"i": _i}
    try:
        signal.setitimer(signal.ITIMER_REAL, TEST_S)
        if _t["statement"]:
            exec(_t["statement"], _ns)
            _r["ok"] = True
        else:
            _v = eval(_t["call"], _ns)
            _r["out"] = repr(_v)[:300]
            try:
                _x = eval(_t["expected"], _ns)
                _r["ok"] = bool(_v == _x)
            except BaseException:
                if not _t["printed"]:
                    raise
                _r["ok"] = False
            if not _r["ok"] and _t["printed"]:
                _r["ok"] = _r["out"] == _t["expected"] or str(_v) == _t["expected"]
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as _e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _r["ok"] = False
        _r["error"] = type(_e).__name__
    _emit(_r)
"""


def harness(
    code: str, tests: list[Test], mark: str, load_s: float = 3.0, test_s: float = 2.0
) -> str:
    """The program that loads `code` and runs every test on it, printing one JSON
    line per test after `mark` (drawn afresh per run, so a candidate that writes to
    the output itself cannot forge a result; what it prints is thrown away)."""
    head = (
        f"CODE = {code!r}\nTESTS = {[t.as_dict() for t in tests]!r}\n"
        f"LOAD_S = {load_s!r}\nTEST_S = {test_s!r}\nMARK = {mark!r}\n"
    )
    return head + HARNESS


def read_results(stdout: str, mark: str) -> tuple[str | None, dict[int, dict]]:
    """(how loading went: "ok", an error, or None when it never said; each test's
    record by its index) from the harness's printed lines."""
    loaded, results = None, {}
    for line in stdout.splitlines():
        if not line.startswith(mark):
            continue
        try:
            record = json.loads(line[len(mark) :])
        except ValueError:
            continue
        if "load" in record:
            loaded = str(record["load"])
        elif isinstance(record.get("i"), int):
            results[record["i"]] = record
    return loaded, results

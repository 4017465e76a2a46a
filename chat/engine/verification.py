"""Checking candidates by running them: the verify strategy's sandbox work.

Code candidates run against the tests their question states (codetests.py), each in
one sandbox run, and are compared on the outputs they give for the same inputs
(CodeT's dual agreement). A program written to compute an answer runs once and its
last printed line is its answer (program-aided answers). Every run goes through the
sandbox's public `run_python` (tools/sandbox.py), within the sandbox's limits, and a
run counts against the run's budget of sandbox runs (`SandboxBudget`): a question
that would take more is cut short, and the decision says so.

Also the classifier of questions (code, computation, anything else) and the key
answers are compared by (shortanswer.py's normalisation, numbers rounded, True as yes).
"""

import asyncio
import re
import secrets
from dataclasses import dataclass, field

from django.conf import settings

from . import codetests, prompts, shortanswer
from .codetests import Test
from .tools.sandbox import Execution, SandboxLimits, run_python

CODE, COMPUTATION, AGREEMENT = "code", "computation", "agreement"

_COMPUTATION = [
    r"\d\s*[-+*/×÷^%]\s*\d",  # arithmetic written out
    r"\bhow\s+(?:many|much|long|far|old)\b",
    r"\bis\s+\d+\s+(?:a\s+)?(?:prime|perfect|divisible|even|odd)\b",
    r"\b(?:sum|product|average|mean|median|remainder|factorial|square root|percent(?:age)?)\b"
    r"[^.?!]*\d",
    r"\b(?:convert|in\s+(?:km|kilometres|kilometers|miles|kg|pounds|celsius|fahrenheit))\b",
    r"\b(?:what\s+day|days?\s+(?:between|until|after|before|from))\b",
    r"\b\d{4}-\d{2}-\d{2}\b",
]


def kind_of(question: str) -> str:
    """Which check fits the question: running code against its tests, computing the
    answer with a program, or agreement among samples. Cheap rules, no model call."""
    if codetests.is_code_question(question):
        return CODE
    if prompts.has_lettered_choices(question):
        # A letter is chosen, not computed: a program's number is no choice, and on the
        # development set a computed "6" outvoted the draws that chose the right letter.
        return AGREEMENT
    lowered = question.lower()
    if any(re.search(pattern, lowered) for pattern in _COMPUTATION):
        return COMPUTATION
    return AGREEMENT


def answer_key(text: str | None) -> str:
    """The form two answers are compared in: normalised, a number rounded to nine
    places (0.1 + 0.2 is 0.3), True/False as yes/no; "" for no answer."""
    if not text or not text.strip():
        return ""
    key = shortanswer.normalise(text.strip().strip("`'\""))
    key = {"true": "yes", "false": "no"}.get(key, key)
    if re.fullmatch(r"-?\d+", key):
        return key  # an integer stays exact (floats lose digits past 2**53)
    try:
        number = float(key)
    except ValueError:
        return key
    if number != number or number in (float("inf"), float("-inf")):
        return key
    rounded = f"{round(number, 9):.9f}".rstrip("0").rstrip(".")
    return "0" if rounded == "-0" else rounded


# The letter a draw chose, however it put it: "C", "(C)", "Answer C", "option C) Paris".
# The letter is a capital: "a" in "a bit tricky" is a word.
_CHOSEN = re.compile(
    r"^\W*(?i:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*:?\s*)?"
    r"\(?([A-H])(?![A-Za-z])"
)


def choice_key(text: str) -> str:
    """The choice letter an answer settles on, lower-cased as answer keys are; "" for
    none. Draws of the 1.5B said "C", "Answer C" and "C) Shapes" for one choice,
    three keys to `answer_key`."""
    extracted = shortanswer.extract(text)
    chosen = _CHOSEN.match(extracted) if extracted else None
    return chosen.group(1).lower() if chosen else ""


@dataclass
class SandboxBudget:
    """The sandbox runs a run may still make (the panel's `max_sandbox_runs`), and
    how many it made; at most two at once (the sandbox is CPU-bound)."""

    left: int
    made: int = 0
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.made += 1
        return True

    async def run(self, program: str) -> Execution | None:
        """The program's run, or None when the budget is spent."""
        if not self.take():
            return None
        limits = SandboxLimits(wall_s=settings.RUN_PYTHON_WALL_S, cpu_s=settings.RUN_PYTHON_CPU_S)
        async with self._slots:
            for _attempt in range(3):
                execution = await run_python(program, limits)
                # bubblewrap could not start (every sandbox of the host shares one
                # user's process limit): the code never ran, so it is tried again.
                if "bwrap:" not in execution.stderr[:300] or execution.stdout:
                    break
                await asyncio.sleep(0.2)
            return execution


@dataclass
class CodeCheck:
    """One candidate against the question's tests: which passed, what it returned
    for each input, and what stopped it when something did."""

    code: str | None
    passed: list[int] = field(default_factory=list)
    outputs: tuple = ()
    errored: set[int] = field(default_factory=set)  # tests that raised (not a wrong value)
    problem: str = ""  # no code, not loaded, stopped at a limit, not run

    @property
    def ran(self) -> bool:
        return not self.problem


def _problem(execution: Execution, loaded: str | None) -> str:
    if loaded not in (None, "ok"):
        return f"its code does not load ({loaded})"
    if execution.ended != "exited":
        return execution.summary()
    if loaded is None:
        why = f"{execution.summary()} {execution.stderr[-200:]}".strip()
        return f"it ended before its tests ran. {why}"
    return ""


async def check_code(code: str | None, found: list[Test], budget: SandboxBudget) -> CodeCheck:
    """Run one candidate's code against the tests, in the sandbox."""
    if code is None:
        return CodeCheck(None, problem="no code found in the answer")
    mark = f"@@verify-{secrets.token_hex(4)} "
    execution = await budget.run(codetests.harness(code, found, mark))
    if execution is None:
        return CodeCheck(code, problem="not run: the run's sandbox runs were used up")
    if execution.ended == "unavailable":
        return CodeCheck(code, problem=execution.summary())
    loaded, results = codetests.read_results(execution.stdout, mark)
    check = CodeCheck(code)
    outputs = []
    for i in range(len(found)):
        record = results.get(i)
        if record is None:
            outputs.append("(not reached)")
            continue
        if record.get("ok"):
            check.passed.append(i)
        if "error" in record:
            check.errored.add(i)
        outputs.append(record.get("out", record.get("error", "")))
    check.outputs = tuple(outputs)
    if problem := _problem(execution, loaded):
        check.problem = problem
    return check


PROGRAM_PROMPT = """Write a short Python 3 program that computes the answer to the question
below, and prints only the final answer (one value) as its last line. Reply with the
program in one ```python fenced block.

Question:
{question}"""


def program_prompt(question: str) -> str:
    return PROGRAM_PROMPT.format(question=question)


@dataclass
class Computed:
    value: str  # the last line it printed, or ""
    problem: str = ""


async def compute(answer_text: str, budget: SandboxBudget) -> Computed:
    """The value a program-writing answer computes: its fenced program run in the
    sandbox, its last printed line."""
    code = codetests.code_in(answer_text, []) or _any_fence(answer_text)
    if code is None:
        return Computed("", "no program found in the answer")
    execution = await budget.run(code)
    if execution is None:
        return Computed("", "not run: the run's sandbox runs were used up")
    if not execution.ok:
        return Computed("", execution.summary())
    lines = [line.strip() for line in execution.stdout.splitlines() if line.strip()]
    if not lines:
        return Computed("", "the program printed nothing")
    return Computed(lines[-1][:200])


def _any_fence(text: str) -> str | None:
    match = re.search(r"```[^\n]*\n(.*?)(?:```|\Z)", text, re.DOTALL)
    return match.group(1) if match else None


async def draft_that_passed(question: str, drafts: list, budget: SandboxBudget):
    """For fusion: the first draft (panel order) whose code passes every test the
    question states, with what each draft passed; (None, {}) when the question
    states no tests or no draft passed them all. A draft that passed is kept as
    written, never re-synthesized."""
    found = codetests.find_tests(question)
    if not found.tests or not codetests.is_code_question(question):
        return None, {}
    names = codetests.entry_points(question)
    imports = codetests.question_imports(question)
    results = []
    for draft in drafts:
        code = codetests.code_in(draft.text, names)
        if code is not None and imports:
            code = f"{imports}\n{code}"
        check = await check_code(code, found.tests, budget)
        results.append((draft, check))
    detail = {
        "tests": [t.source for t in found.tests],
        "drafts": [
            {"seat": d.model_name, "passed": len(c.passed), "problem": c.problem}
            for d, c in results
        ],
        "sandbox_runs": budget.made,
    }
    for draft, check in results:
        if check.ran and len(check.passed) == len(found.tests):
            return draft, detail
    return None, detail

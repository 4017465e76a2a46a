"""The verify strategy on scripted upstreams, real sockets and the real sandbox:
every path counts the sandbox runs and the upstream calls it made."""

import asyncio
import itertools

import pytest

from chat.engine import codetests, verification
from chat.engine.tools.sandbox import unavailable_reason
from chat.engine.verification import choice_key
from chat.models import Answer, Run
from tests.pipeline_kit import ScriptedPanel, run_and_listen
from tests.scripted_server import Reply

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redis_ready"),
    pytest.mark.skipif(unavailable_reason() is not None, reason="needs bubblewrap"),
]

ADD = '''def add(a: int, b: int) -> int:
    """Add two numbers.
    >>> add(2, 3)
    5
    add(1, 1) ➞ 2
    """
'''
RIGHT = "Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
PRODUCT = "What is 123456789 * 987654321?"


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def sandbox_runs(monkeypatch):
    """Every program the strategy sent to the sandbox."""
    sent: list[str] = []
    real = verification.run_python

    async def counted(code, limits=None):
        sent.append(code)
        return await real(code, limits)

    monkeypatch.setattr(verification, "run_python", counted)
    return sent


@pytest.fixture
def make_kit():
    kits = []

    def make(settings=None, seats=2, seat_options=()):
        kit = ScriptedPanel(
            seats=seats, seat_options=seat_options, strategy="verify", strategy_settings=settings
        )
        kits.append(kit)
        return kit

    yield make
    for kit in kits:
        kit.close()


def _always(text):
    return lambda body: Reply.stream([text])


def _run(kit, question) -> Run:
    run_id = kit.ask(question)
    asyncio.run(run_and_listen(kit, run_id))
    return Run.objects.get(pk=run_id)


def _final(run: Run) -> Answer:
    return run.answers.get(role=Answer.Role.SYNTHESIZER)


def _verify(run: Run) -> dict:
    [decision] = [d for d in run.decisions if d["stage"] == "verify"]
    return decision


def test_the_candidate_that_passes_the_questions_tests_is_final_verbatim(make_kit, sandbox_runs):
    kit = make_kit({"samples": 1})
    kit.seats[0].respond, kit.seats[1].respond = _always(WRONG), _always(RIGHT)
    run = _run(kit, ADD)
    decision = _verify(run)
    assert run.status == Run.Status.DONE
    assert _final(run).text == RIGHT  # as written: no model rewrote it
    assert "passed all 2 tests in the question" in decision["summary"]
    assert decision["detail"]["tests"] == [">>> add(2, 3)", "add(1, 1) ➞ 2"]
    # Two distinct programs (each seat's sample wrote the same code as its answer).
    assert len(sandbox_runs) == 2 == decision["detail"]["sandbox_runs"]
    assert kit.calls() == {"seat-0": 2, "seat-1": 2, "judge": 0, "synth": 0}


def test_no_tests_found_still_runs_the_code_and_says_so(make_kit, sandbox_runs):
    kit = make_kit({"samples": 0})
    broken = "```python\ndef slug(s):\n    return s.lower(\n```"
    kit.seats[0].respond = _always(broken)
    kit.seats[1].respond = _always("```python\ndef slug(s):\n    return s.lower()\n```")
    run = _run(
        kit, 'Write this function:\n\ndef slug(s):\n    """A title, lower-cased for a URL."""\n'
    )
    decision = _verify(run)
    assert decision["summary"].startswith("No tests found in the question")
    assert _final(run).model_name == "Seat-1"
    problems = [c["problem"] for c in decision["detail"]["candidates"]]
    assert "does not load" in problems[0] and problems[1] == ""
    assert len(sandbox_runs) == 2
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 0, "synth": 0}


def test_all_candidates_failing_is_said_and_nothing_is_rewritten(make_kit, sandbox_runs):
    kit = make_kit({"samples": 0})
    also_wrong = "```python\ndef add(a, b):\n    return a * b\n```"
    kit.seats[0].respond, kit.seats[1].respond = _always(WRONG), _always(also_wrong)
    run = _run(kit, ADD)
    decision = _verify(run)
    assert decision["summary"].startswith("No candidate passed any of the 2 tests")
    assert _final(run).text == WRONG  # the first seat's, as written (panel order)
    assert len(sandbox_runs) == 2
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 0, "synth": 0}


def _asks_for_a_program(body: dict) -> bool:
    return "Write a short Python 3 program" in body["messages"][-1]["content"]


def test_a_computed_answer_beats_a_wrong_stated_answer(make_kit, sandbox_runs):
    kit = make_kit({"samples": 0, "computed_weight": 2.5})
    wrong = "The answer is 121932631112635260."
    program = "```python\nprint(123456789 * 987654321)\n```"
    flood = "```python\nprint('x' * 100_000_000)\n```"  # a program that prints 100 MB

    def seat(program_reply):
        def respond(body):
            return Reply.stream([program_reply if _asks_for_a_program(body) else wrong])

        return respond

    kit.seats[0].respond, kit.seats[1].respond = seat(program), seat(flood)
    run = _run(kit, PRODUCT)
    decision = _verify(run)
    assert decision["detail"]["kind"] == "computation"
    assert decision["summary"].startswith("Vote 2.5–2 for 121932631112635269")
    assert _final(run).text.startswith("121932631112635269\n")
    [good, flooded] = decision["detail"]["programs"]
    assert good["value"] == "121932631112635269"
    assert "output limit" in flooded["problem"]
    assert len(sandbox_runs) == 2
    assert kit.calls() == {"seat-0": 2, "seat-1": 2, "judge": 0, "synth": 0}


def test_the_most_self_consistent_seat_wins_by_agreement(make_kit, sandbox_runs):
    kit = make_kit({"samples": 2})
    scattered = itertools.cycle(["Sydney.", "Canberra.", "Melbourne."])
    kit.seats[0].respond = lambda body: Reply.stream([next(scattered)])
    kit.seats[1].respond = _always("Canberra.")
    run = _run(kit, "Which city is the capital of Australia?")
    decision = _verify(run)
    assert decision["summary"].startswith("Seat-1 was the most self-consistent seat (3 of 3")
    assert _final(run).text == "Canberra."
    assert decision["detail"]["seats"][0]["consistency"] == pytest.approx(1 / 3, abs=0.001)
    assert sandbox_runs == []
    assert kit.calls() == {"seat-0": 3, "seat-1": 3, "judge": 0, "synth": 0}


def test_bad_code_and_bad_tests_end_in_the_sandboxs_limits(make_kit, sandbox_runs, settings):
    settings.RUN_PYTHON_WALL_S = 8
    question = ADD + "assert add(1,\n>>> add(1, undefined_name)\n3\n"
    endless = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    snooping = (  # forks, and reads a file the sandbox does not have
        "```python\nimport os\ndef add(a, b):\n    os.fork()\n"
        "    return len(open('/etc/passwd').read())\n```"
    )
    kit = make_kit({"samples": 0, "max_sandbox_runs": 2}, seats=3)
    kit.seats[0].respond = _always(endless)
    kit.seats[1].respond = _always(snooping)
    kit.seats[2].respond = _always(RIGHT)
    run = _run(kit, question)
    decision = _verify(run)
    detail = decision["detail"]
    # The syntax error is broken from the start; the NameError raised in every candidate.
    assert "assert add(1," in detail["broken_tests"]
    assert ">>> add(1, undefined_name)" in detail["broken_tests"]
    endless_check, snooping_check, right_check = detail["candidates"]
    assert endless_check["passed"] == [] and snooping_check["passed"] == []
    assert right_check["problem"] == "not run: the run's sandbox runs were used up"
    assert len(sandbox_runs) == 2 == detail["sandbox_runs"]
    assert run.status == Run.Status.DONE


def test_tests_are_found_in_every_stated_form():
    question = '''def f(x, y=0):
    """
    >>> f(1)
    1
    f(2) == 2
    f(3) ➞ 3
    f(4) -> 4
    f(5) should return 5.
    For x = 6 the output should be 6
    """
assert f(7) == 7
'''
    found = codetests.find_tests(question)
    assert len(found.tests) == 7 and found.broken == []
    assert sorted((t.expected, t.call) for t in found.tests) == [
        ("1", "f(1)"),
        ("2", "f(2)"),
        ("3", "f(3)"),
        ("4", "f(4)"),
        ("5", "f(5)"),
        ("6", "f(x = 6)"),
        ("7", "f(7)"),
    ]


MULTIPLE_CHOICE = (
    "How many whole numbers between 10 and 50 are divisible by 7?\nA) 4\nB) 5\nC) 6\nD) 7"
)


def test_a_lettered_choice_is_agreed_on_by_its_letter_and_never_computed(make_kit, sandbox_runs):
    """As the development set found: three draws of the 1.5B said one choice three ways
    (three keys, "1 of 3 draws agree"), and a program's "6" outvoted the letters."""
    kit = make_kit({"samples": 2}, seats=1)
    ways = ["Answer: C", "The answer is C) 6.", "**Answer C**"]
    said = itertools.cycle(ways)
    kit.seats[0].respond = lambda body: Reply.stream([next(said)])
    run = _run(kit, MULTIPLE_CHOICE)
    decision = _verify(run)
    assert decision["detail"]["kind"] == "agreement"
    assert decision["detail"]["seats"] == [
        {"seat": 1, "answer": "c", "consistency": 1.0, "draws": 3}
    ]
    assert _final(run).text in ways  # a draw, as written (they are asked at once)
    assert sandbox_runs == []  # no program was asked for
    assert kit.calls() == {"seat-0": 3, "judge": 0, "synth": 0}


@pytest.mark.parametrize(
    ("said", "key"),
    [
        ("C", "c"),
        ("(B)", "b"),
        ("Working…\nAnswer: option D", "d"),
        ("The answer is A) 4.", "a"),
        ("It is a bit tricky to say", ""),
        ("", ""),
    ],
)
def test_choice_keys(said, key):
    assert choice_key(said) == key

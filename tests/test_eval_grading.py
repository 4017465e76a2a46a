"""The evaluation harness's datasets and graders: a broken file is refused with its
line and field, answers are graded the way a person would (whole words, the letter
chosen, tests that pass in the sandbox), and a grade that cannot be made is an
error, never a wrong answer."""

import json

import pytest

from chat.engine.tools import sandbox
from evals import datasets, grading
from evals.datasets import DatasetError

SHORT = {"question": "What is 5 + 7?", "answers": ["12", "twelve"]}


def lines(*objects) -> list[str]:
    return [json.dumps(o) for o in objects]


# ── datasets ──────────────────────────────────────────────────────────────────


def test_a_short_answer_file_is_read_and_its_kind_inferred():
    kind, items = datasets.parse(lines({"id": 1, **SHORT}, {"id": "b", **SHORT, "category": "x"}))
    assert kind == "short"
    assert [i.key for i in items] == ["1", "b"]
    assert items[1].category == "x"
    assert items[0].data == {"question": SHORT["question"], "answers": ["12", "twelve"]}


def test_a_broken_line_is_named_with_its_number():
    with pytest.raises(DatasetError, match=r"^line 2: is not valid JSON"):
        datasets.parse([json.dumps({"id": 1, **SHORT}), '{"id": 2, "question": "x", '])


def test_a_duplicate_id_names_both_lines():
    with pytest.raises(DatasetError) as caught:
        datasets.parse(lines({"id": "q", **SHORT}, {"id": "r", **SHORT}, {"id": "q", **SHORT}))
    assert str(caught.value) == "line 3 field 'id': id 'q' is already used on line 1"


def test_a_code_task_with_no_tests_is_refused():
    task = {"task_id": "t/1", "prompt": "def f(x):\n", "entry_point": "f", "test": "pass"}
    with pytest.raises(DatasetError) as caught:
        datasets.parse(lines(task))
    assert caught.value.line == 1 and caught.value.field == "test"
    assert "check(candidate)" in str(caught.value)


@pytest.mark.parametrize(
    "item, field",
    [
        ({"id": 1, "question": "Q", "choices": ["a", "b"], "answer": "C"}, "answer"),
        ({"id": 1, "question": "Q", "choices": ["only one"], "answer": "A"}, "choices"),
        ({"id": 1, "question": "Q", "choices": ["a", "b"], "answer": "AB"}, "answer"),
        ({"id": 1, "question": "Q", "choices": ["a", "b"], "answer": ""}, "answer"),
        ({"id": 1, "question": "", "answers": ["x"]}, "question"),
        ({"id": 1, "question": "Q", "answers": []}, "answers"),
        ({"id": 1, "task": "T", "criteria": [{"criterion": "c", "weight": 0}]}, "criteria[1]"),
        (
            {"id": 1, "prompt": "p", "entry_point": "not a name", "test": "def check(c): 1"},
            "entry_point",
        ),
        ({"question": "Q", "answers": ["x"]}, "id"),
    ],
)
def test_each_bad_field_is_named(item, field):
    with pytest.raises(DatasetError) as caught:
        datasets.parse(lines(item))
    assert caught.value.field == field and caught.value.line == 1


def test_a_file_of_another_kind_midway_is_refused_at_that_line():
    mixed = lines({"id": 1, **SHORT}, {"id": 2, "question": "Q", "choices": ["a", "b"]})
    # The file is short answers (from line 1): line 2 is valid only if it has answers.
    with pytest.raises(DatasetError, match=r"^line 2 field 'answers'"):
        datasets.parse(mixed)


class _Upload:
    """What Django hands a view for an uploaded file: its size is known up front."""

    def __init__(self, size: int):
        self.size = size

    def open(self, mode):  # never reached for an oversized file
        raise AssertionError("an oversized upload must be refused before it is read")


def test_a_hundred_megabyte_upload_is_refused_before_it_is_read():
    with pytest.raises(DatasetError, match=r"100\.0 MB; the limit is 10 MB"):
        datasets.read_upload(_Upload(100_000_000))


def test_the_shipped_development_sets_are_valid_and_large_enough():
    kinds = {}
    for slug in datasets.SHIPPED:
        kind, items = datasets.read_path(datasets.SHIPPED_DIR / f"{slug}.jsonl")
        kinds[slug] = (kind, len(items), {i.category for i in items})
    assert kinds["dev-short"][0] == "short" and kinds["dev-short"][1] >= 60
    assert kinds["dev-mc"][0] == "choice" and kinds["dev-mc"][1] >= 20
    assert {"arithmetic", "facts", "logic", "reading"} <= kinds["dev-short"][2]
    assert {"arithmetic", "facts", "logic", "reading"} <= kinds["dev-mc"][2]
    assert kinds["test-mc"][0] == "choice" and kinds["test-mc"][1] == 48
    assert kinds["test-mc"][2] == {"arithmetic", "facts", "logic", "reading"}
    # The held-out set is new questions, none of them a development set's.
    development = {
        item.data["question"]
        for slug in ("dev-mc", "dev-short")
        for item in datasets.read_path(datasets.SHIPPED_DIR / f"{slug}.jsonl")[1]
    }
    held_out = datasets.read_path(datasets.SHIPPED_DIR / "test-mc.jsonl")[1]
    assert not development & {item.data["question"] for item in held_out}


def test_humaneval_is_read_from_the_package_file_without_its_executor():
    path = datasets.humaneval_path()
    assert path is not None and path.name == "HumanEval.jsonl.gz"
    kind, items = datasets.read_path(path)
    assert kind == "code" and len(items) == 164
    assert items[0].key == "HumanEval/0" and items[0].data["entry_point"] == "has_close_elements"


# ── short answers ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "reply, right",
    [
        ("Answer: 12", True),
        ("5 + 7 = 12.", True),
        ("The sum is twelve.", True),
        ("Answer: 112", False),  # 12 is not a word of 112
        ("Answer: 12.5", False),
        ("Answer: 1,2", False),
        ("It is 12, I think.\nAnswer: 13", False),  # the answer line decides
        ("What is 5 + 7? Let me see.\nIt is 13.", False),  # graded on the last line
        ("**Answer**: 12\nHope this helps!", True),  # Markdown around the label
        ("Answer: 12/5", False),  # a fraction is one word
    ],
)
def test_short_answers_match_whole_words(reply, right):
    assert grading.grade_short(SHORT, reply).correct is right


def test_numbers_and_words_fold_to_one_spelling():
    assert grading.words("Forty-two apples, costing $1,000.50!") == [
        "42",
        "apples",
        "costing",
        "1000.5",
    ]
    item = {"answers": ["Mount Everest"]}
    assert grading.grade_short(item, "Answer: the mount everest.").correct
    assert not grading.grade_short(item, "Answer: Everest").correct


# ── multiple choice ────────────────────────────────────────────────────────────

CHOICES = ["Mercury", "Venus", "Earth", "Mars"]


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("Answer: B", "B"),
        ("B) Venus", "B"),
        ("(C)", "C"),
        ("The answer is D.", "D"),
        ("I would pick option A because it is closest.", "A"),
        ("It is Mars, the red planet.", "D"),  # no letter: the one choice it named
        ("Venus or Mars.", None),  # two choices named: no answer
        ("Answer: E", None),  # not one of the choices
        ("The answer is a bit tricky; I pick C", "C"),  # "a" is a word, not a letter
        ("A careful reading shows it is C.", "C"),
        ("Answer: I think C", "C"),
    ],
)
def test_the_chosen_letter_is_read(reply, letter):
    assert grading.chosen_letter(reply, CHOICES) == letter


def test_a_choice_is_right_only_with_the_right_letter():
    item = {"question": "Q", "choices": CHOICES, "answer": "B"}
    assert grading.grade_choice(item, "Answer: B").correct
    assert not grading.grade_choice(item, "Answer: C").correct


# ── code, in the sandbox ───────────────────────────────────────────────────────

TASK = {
    "prompt": 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum."""\n',
    "entry_point": "total",
    "test": "def check(candidate):\n"
    "    assert candidate([1, 2]) == 3\n"
    "    assert candidate([]) == 0\n",
}

needs_sandbox = pytest.mark.skipif(
    sandbox.unavailable_reason() is not None, reason="bubblewrap is not installed"
)


@needs_sandbox
async def test_a_right_function_passes_its_tests_in_the_sandbox():
    reply = "Here:\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    grade = await grading.grade_code(TASK, reply)
    assert grade.correct and grade.detail["passed"]


@needs_sandbox
async def test_a_body_only_completion_is_run_after_the_prompt():
    grade = await grading.grade_code(TASK, "    return sum(xs)\n")
    assert grade.correct


@needs_sandbox
async def test_a_wrong_function_fails_with_the_assertion_shown():
    grade = await grading.grade_code(TASK, "```python\ndef total(xs):\n    return 0\n```")
    assert grade.correct is False
    assert "AssertionError" in grade.detail["stderr"]


@needs_sandbox
async def test_a_reply_that_exits_before_the_tests_does_not_pass():
    reply = "```python\nimport sys\ndef total(xs):\n    return 0\nsys.exit(0)\n```"
    grade = await grading.grade_code(TASK, reply)
    assert grade.correct is False and grade.detail["ended"] == "exited"


@needs_sandbox
async def test_helpers_of_the_prompt_are_there_for_the_tests():
    # HumanEval/38's shape: the tests call a helper the prompt defines, which a reply
    # that writes only the asked function does not repeat.
    task = {
        "prompt": "def encode(s):\n    return s[::-1]\n\n\ndef decode(s):\n"
        '    """Undo encode."""\n',
        "entry_point": "decode",
        "test": "def check(candidate):\n    assert candidate(encode('abc')) == 'abc'\n",
    }
    grade = await grading.grade_code(task, "```python\ndef decode(s):\n    return s[::-1]\n```")
    assert grade.correct, grade.detail


@needs_sandbox
async def test_a_solution_that_loops_forever_is_wrong_not_hung():
    reply = "```python\ndef total(xs):\n    while True:\n        pass\n```"
    grade = await grading.grade_code(TASK, reply)
    assert grade.correct is False
    # Killed at its CPU limit (5 s) or the wall clock (10 s), whichever comes first.
    assert grade.detail["ended"] in ("timed_out", "exited")
    assert "stopped" in grade.detail["summary"]
    assert grade.detail["ms"] < 15_000


@needs_sandbox
async def test_code_cannot_reach_the_network_or_the_project():
    reply = (
        "```python\nimport socket, os\ndef total(xs):\n"
        "    assert not os.path.exists('/work'), 'project visible'\n"
        "    socket.create_connection(('127.0.0.1', 6379), 1)\n    return sum(xs)\n```"
    )
    grade = await grading.grade_code(TASK, reply)
    assert grade.correct is False
    assert "project visible" not in grade.detail["stderr"]


# ── rubric ─────────────────────────────────────────────────────────────────────

RUBRIC = {
    "task": "Explain why the sky is blue.",
    "criteria": [
        {"criterion": "Mentions Rayleigh scattering", "weight": 3},
        {"criterion": "Says shorter wavelengths scatter more", "weight": 1},
    ],
}


async def test_rubric_verdicts_are_stored_per_criterion_and_weighted():
    verdicts = {"verdicts": [{"criterion": 1, "met": True, "reason": "it does"}, {"met": False}]}
    asked = []

    async def grader(question: str) -> str:
        asked.append(question)
        return "Sure.\n" + json.dumps(verdicts)

    grade = await grading.grade_rubric(RUBRIC, "Rayleigh scattering.", grader)
    assert grade.score == 0.75  # weight 3 of 4
    assert [v["met"] for v in grade.detail["verdicts"]] == [True, False]
    assert grade.detail["verdicts"][0]["reason"] == "it does"
    assert "<answer>\nRayleigh scattering.\n</answer>" in asked[0]


@pytest.mark.parametrize(
    "nonsense",
    [
        "I think the answer is great!",
        '{"verdicts": [{"met": true}]}',  # one verdict for two criteria
        '{"verdicts": [{"met": "yes"}, {"met": false}]}',
        "{not json}",
    ],
)
async def test_a_grader_that_returns_nonsense_is_a_grading_error(nonsense):
    async def grader(question: str) -> str:
        return nonsense

    with pytest.raises(grading.GradingError):
        await grading.grade_rubric(RUBRIC, "An answer.", grader)


async def test_a_rubric_without_a_grader_is_a_grading_error():
    with pytest.raises(grading.GradingError, match="needs a grader model"):
        await grading.grade_rubric(RUBRIC, "An answer.", None)

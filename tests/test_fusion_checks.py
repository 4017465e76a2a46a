"""Fusion's two defects measured in issue 24, each with its regression test: draft
labels that collided with a question's lettered choices, and working code that the
synthesizer rewrote. Scripted upstreams on real sockets; calls and sandbox runs counted."""

import asyncio
import json

import pytest

from chat.engine.tools.sandbox import unavailable_reason
from chat.models import Answer, Run
from tests.pipeline_kit import ScriptedPanel, run_and_listen
from tests.scripted_server import Reply
from tests.test_verify import ADD, RIGHT, WRONG, sandbox_runs  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]

QUESTION = "Which of these is a prime number?\nA) 4\nB) 6\nC) 7\nD) 9"


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def kit():
    made = ScriptedPanel(seats=2)
    yield made
    made.close()


def _run(kit, question) -> Run:
    run_id = kit.ask(question)
    asyncio.run(run_and_listen(kit, run_id))
    return Run.objects.get(pk=run_id)


def test_drafts_of_a_lettered_question_are_numbered_not_lettered(kit, sandbox_runs):  # noqa: F811
    kit.seats[0].enqueue(Reply.stream(["C) 7 is prime."]))
    kit.seats[1].enqueue(Reply.stream(["A) 4"]))
    analysis = {
        "consensus": [],
        "contradictions": [
            {
                "point": "which is prime",
                "positions": {"Draft 1": "C", "Draft 2": "A"},
                "verdict": "Draft 1 is right: 7 is prime.",
            }
        ],
        "unique_insights": [],
        "blind_spots": [],
        "errors": [],
        "scores": [
            {"label": "Draft 1", "score": 9, "reason": "right"},
            {"label": "Draft 2", "score": 2, "reason": "4 = 2 × 2"},
        ],
    }
    kit.judge.enqueue(Reply.stream([json.dumps(analysis)]))
    kit.synthesizer.enqueue(Reply.stream(["C) 7"]))
    run = _run(kit, QUESTION)
    assert run.status == Run.Status.DONE
    judge_prompt = kit.judge.requests[0]["json"]["messages"][1]["content"]
    assert 'label="Draft 1"' in judge_prompt and 'label="Draft 2"' in judge_prompt
    assert 'label="A"' not in judge_prompt and 'label="B"' not in judge_prompt
    assert set(run.analysis["labels"]) == {"Draft 1", "Draft 2"}
    synth_prompt = kit.synthesizer.requests[0]["json"]["messages"][1]["content"]
    assert "Verdict: Draft 1 is right" in synth_prompt and 'label="A"' not in synth_prompt
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 1, "synth": 1}
    assert sandbox_runs == []  # not a code question


@pytest.mark.skipif(unavailable_reason() is not None, reason="needs bubblewrap")
def test_a_draft_that_passes_the_questions_tests_is_kept_as_written(kit, sandbox_runs):  # noqa: F811
    kit.seats[0].enqueue(Reply.stream([WRONG]))
    kit.seats[1].enqueue(Reply.stream([RIGHT]))
    run = _run(kit, ADD)
    final = run.answers.get(role=Answer.Role.SYNTHESIZER)
    assert final.text == RIGHT and final.cost_source == "unfused"
    [decision] = run.decisions
    assert (
        decision["summary"] == "Seat-1's draft passed every test in the question: kept as written"
    )
    assert [d["passed"] for d in decision["detail"]["drafts"]] == [0, 2]
    assert len(sandbox_runs) == 2
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 0, "synth": 0}

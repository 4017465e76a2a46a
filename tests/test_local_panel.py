"""The bundled models as a user meets them, through the real worker and the real
model servers: the Local panel's final answers are clean (no prompt scaffolding),
and the Self-consistency preset answers an arithmetic question by vote.

Slow (real decoding on two cores), so they run once, in the SQLite pass: what the
models answer does not depend on the database.
"""

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from chat.engine.runs import start_conversation
from chat.models import Run
from panels.catalog import sync_site_providers
from panels.models import Panel
from panels.presets import sync_presets

pytestmark = [pytest.mark.stack, pytest.mark.models, pytest.mark.django_db(transaction=True)]

# Local verifies (three draws of the 1.5B a question, and a program for a
# computation), and its final answer is a draw as written, never a synthesis: two
# questions cover both of its paths, a computation (the program's value, then the
# draws' agreement) and an open one (no value to agree on). Facts and yes/no take the
# agreement path too, and each question costs CI about 15 s of decoding.
QUESTIONS = [
    "What is 15% of 200?",
    "Why is the sky blue? Answer in one sentence.",
]
# What a small synthesizer copies from its prompt when it goes wrong.
SCAFFOLDING = re.compile(
    r"</?\s*(answer|analysis|question)\b|‹/?(answer|analysis|question)"
    r"|\b(answer|draft)s? [A-H] (says|states|notes|mentions)"
    r"|the answer is correct and the question is answered"
    r"|reviewer'?s notes|draft answers?\b",
    re.IGNORECASE,
)


@pytest.fixture
def owner(db):
    if connection.vendor != "sqlite":
        pytest.skip("real-model answers do not depend on the database: run in the SQLite pass")
    sync_site_providers()
    sync_presets()
    return get_user_model().objects.create_user("quality", password="pw-long-enough-1")


def _ask_all(owner, slug: str, questions: list[str], at_once: int = 2) -> list[Run]:
    """Ask through the worker, `at_once` runs at a time (each model serves two)."""
    panel = Panel.objects.get(slug=slug)
    runs, pending = [], list(questions)
    started: list[int] = []
    deadline = time.monotonic() + 180 * len(questions) / at_once
    while pending or started:
        while pending and len(started) < at_once:
            message = start_conversation(owner, panel, pending.pop(0), via="cli")
            started.append(message.run.pk)
        time.sleep(0.5)
        for run in Run.objects.filter(pk__in=started):
            if not run.is_active:
                started.remove(run.pk)
                runs.append(run)
        assert time.monotonic() < deadline, "the Local runs did not finish in time"
    return sorted(runs, key=lambda r: r.pk)


def test_local_panel_final_answers_are_clean(live_stack, owner):
    runs = _ask_all(owner, "local", QUESTIONS)
    problems = []
    for run in runs:
        final = run.final_answer
        if run.status != Run.Status.DONE or final is None or not final.text.strip():
            problems.append(f"{run.message.content!r}: {run.status} {run.failure_detail}")
        elif found := SCAFFOLDING.search(final.text):
            problems.append(f"{run.message.content!r}: {found.group(0)!r} in {final.text!r}")
        elif [d["stage"] for d in run.decisions] != ["verify"]:
            problems.append(f"{run.message.content!r}: decided by {run.decisions}")
    assert not problems, "\n".join(problems)
    took = sorted(run.stage_ms["total"] for run in runs)
    print(f"Local runs: p50 {took[len(took) // 2]} ms, max {took[-1]} ms")


def test_self_consistency_answers_arithmetic_by_vote(live_stack, owner):
    (run,) = _ask_all(owner, "self-consistency", ["What is 7 times 8?"])
    assert run.status == Run.Status.DONE, run.failure_detail
    (decision,) = run.decisions
    assert decision["stage"] == "vote" and decision["summary"].startswith("Vote ")
    tally = decision["detail"]
    assert sum(len(g["seats"]) for g in tally["groups"]) + len(tally["abstained"]) == 3
    assert tally["winner"] is not None and 0 < tally["confidence"] <= 1
    # The final answer is a member of the winning group, as it was written.
    winners = [g for g in tally["groups"] if g["answer"] == tally["winner"]]
    assert run.final_answer.model_name in winners[0]["seats"]
    assert tally["winner"] in run.final_answer.text

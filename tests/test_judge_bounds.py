"""A judge that cannot run away: a loop, a deadline, a token allowance sized to the
panel, repair only of what can be repaired; and a final answer free of scaffolding."""

import asyncio
import time

import pytest

from chat.engine.judge import token_allowance
from chat.models import Run
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def kit():
    kit = ScriptedPanel()
    yield kit
    kit.close()


def _seats(kit, *texts):
    for server, text in zip(kit.seats, texts, strict=True):
        server.enqueue(Reply.stream([text]))


def test_a_judge_that_repeats_itself_is_cut_off_and_the_panels_best_answer_stands(kit):
    _seats(kit, "Canberra, since 1913.", "Sydney.", "Canberra.")
    # A judge stuck in a loop: it would stream for 60 s if nobody stopped it.
    loop = Reply.stream(
        ['{"consensus": ["Canberra is the capital", '] + ['"A", '] * 3000, delay=0.02
    )
    kit.judge.enqueue(loop)
    started = time.monotonic()
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    elapsed = time.monotonic() - started
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.DONE
    assert run.failure_reason == Run.Failure.JUDGE_RUNAWAY
    assert "fell into a loop" in run.failure_detail and "not fused" in run.failure_detail
    assert run.final_answer.text == "Canberra, since 1913."  # the first seat, unfused
    assert run.final_answer.cost_source == "unfused"
    judge = run.judge_answers[0]
    assert judge.error_kind == "repetition" and len(run.judge_answers) == 1  # no repair
    assert kit.synthesizer.requests == []  # nothing left to fuse: no synthesis call
    assert elapsed < 20, f"the loop was not cut off early ({elapsed:.1f} s)"


def test_the_judge_stage_ends_at_its_deadline(kit, settings):
    settings.JUDGE_DEADLINE_S = 2
    _seats(kit, "Canberra.", "Sydney.", "Canberra.")
    kit.judge.enqueue(
        Reply.stream(['{"consensus": ['] + [f'"point {i}", ' for i in range(500)], delay=0.05)
    )
    started = time.monotonic()
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    run = Run.objects.get(pk=run_id)
    assert run.stage_ms["judging"] < 4000, run.stage_ms
    assert run.status == Run.Status.DONE and run.failure_reason == Run.Failure.JUDGE_RUNAWAY
    assert "within 2 s" in run.failure_detail
    assert run.final_answer.text == "Canberra."
    assert time.monotonic() - started < 15


def test_a_reply_cut_off_at_its_token_allowance_is_not_sent_for_repair(kit):
    _seats(kit, "Canberra.", "Sydney.", "Canberra.")
    kit.judge.enqueue(Reply.stream(['{"consensus": ["Canberra'], finish="length"))
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    run = Run.objects.get(pk=run_id)
    assert len(kit.judge.requests) == 1  # a truncated reply is not a format error
    assert run.failure_reason == Run.Failure.JUDGE_RUNAWAY and "cut off" in run.failure_detail


def test_an_empty_judge_reply_and_an_upstream_error_are_typed(kit):
    _seats(kit, "Canberra.", "Sydney.", "Canberra.")
    kit.judge.enqueue(Reply.stream([""]))
    run_id = kit.ask()
    asyncio.run(run_and_listen(kit, run_id))
    assert Run.objects.get(pk=run_id).failure_reason == Run.Failure.JUDGE_EMPTY


def test_the_judges_token_allowance_grows_with_the_panel(settings):
    settings.JUDGE_MAX_TOKENS, settings.JUDGE_TOKENS_PER_ANSWER = 1500, 250
    assert token_allowance(2, drafts=False) == 700
    assert token_allowance(8, drafts=False) == 1500  # capped


def test_the_token_allowance_reaches_the_judges_request(kit, settings):
    settings.JUDGE_MAX_TOKENS, settings.JUDGE_TOKENS_PER_ANSWER = 1500, 100
    _seats(kit, "Canberra.", "Sydney.", "Canberra.")
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    asyncio.run(run_and_listen(kit, kit.ask()))
    assert kit.judge.requests[0]["json"]["max_tokens"] == 500


def test_scaffolding_copied_by_the_synthesizer_never_reaches_the_user(kit):
    _seats(kit, "Red.", "Blue.", "Yellow.")
    kit.judge.enqueue(analysis_reply())
    copied = '<answer label="B">\nAnswer B says that red is a primary colour.\n</answer>\n'
    kit.synthesizer.enqueue(
        Reply.stream([copied, "The answer is correct and the question is answered correctly."])
    )
    run_id = kit.ask("Name a primary colour.")
    asyncio.run(run_and_listen(kit, run_id))
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.DONE
    assert run.synthesis.text == "Red is a primary colour."

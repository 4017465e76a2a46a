"""The harness end to end in one process, on scripted upstreams over real sockets:
every system answers every item through the pipeline, answers are graded and saved
one row per (system, item), errors are counted as errors, a stop keeps what
finished and a second start does only the rest."""

import asyncio
import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model

from chat.engine import live, loop
from evals import control, datasets, harness, report, systems
from evals.models import Evaluation, Result
from panels.models import CatalogModel, Provider
from tests.conftest import until
from tests.pipeline_kit import ScriptedPanel
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]

ITEMS = [
    {"id": "add", "question": "What is 2 + 2?", "answers": ["4", "four"], "category": "arithmetic"},
    {"id": "mul", "question": "What is 2 × 3?", "answers": ["6"], "category": "arithmetic"},
    {"id": "cap", "question": "Capital of France?", "answers": ["Paris"], "category": "facts"},
    {"id": "sum", "question": "What is 10 + 2?", "answers": ["12"], "category": "arithmetic"},
]


@pytest.fixture(autouse=True)
def one_at_a_time(settings):
    # Scripted replies are served in order: one run at a time keeps them paired.
    settings.EVAL_CONCURRENCY = 1
    settings.EVAL_LEASE_TTL_S = 3


def dataset_of(owner, items=ITEMS, kind=None):
    kind, parsed = datasets.parse([json.dumps(i) for i in items], kind)
    return datasets.save(owner, "Tiny", kind, parsed, source="test")


def create(*args, **kwargs) -> Evaluation:
    """An evaluation this test runs itself (never queued for a worker)."""
    return control.create(*args, enqueue_it=False, **kwargs)


def seats_alone(kit) -> Evaluation:
    """Each seat of the kit's panel alone, on the four items."""
    return create(kit.user, dataset_of(kit.user), systems.parse(["seats"], kit.panel, kit.user))


def evaluate(evaluation_id: int):
    return loop.run(harness.evaluate(evaluation_id))


def test_every_system_answers_every_item_and_the_report_pairs_them():
    kit = ScriptedPanel(seats=3)
    try:
        kit.seats[0].default = Reply.stream(["Let me see.\n", "Answer: 4"])  # right on 1 of 4
        kit.seats[1].default = Reply.stream(["Answer: 112"])  # never right: 12 ≠ 112
        kit.seats[2].default = Reply.json(400, {"error": {"message": "model not found"}})
        evaluation = seats_alone(kit)
        assert evaluate(evaluation.pk) == Evaluation.Status.DONE

        evaluation.refresh_from_db()
        assert evaluation.total == 12 and evaluation.results.count() == 12
        assert evaluation.attempts == 1 and evaluation.busy_s > 0
        first, second, broken = evaluation.systems.order_by("position")
        right = Result.objects.filter(system=first, correct=True)
        assert [r.item.key for r in right] == ["add"]
        assert Result.objects.filter(system=second, correct=False).count() == 4
        # The failing seat: four errors, none of them counted as a wrong answer.
        errors = Result.objects.filter(system=broken)
        assert {r.status for r in errors} == {"error"} and not errors.filter(correct=False)
        assert "model not found" in errors.first().error
        # Runs are recorded like any other, in conversations the conversation list hides.
        run = right.first().run
        assert run.message.conversation.hidden and run.config["via"] == "eval"
        assert right.first().latency_ms is not None and right.first().output_tokens

        summary = report.summarise(evaluation)
        rows = {row.system.pk: row for row in summary.rows}
        assert summary.baseline is rows[first.pk]
        assert rows[first.pk].accuracy == 0.25 and rows[second.pk].accuracy == 0.0
        assert rows[second.pk].delta == -0.25
        assert (rows[second.pk].fixed, rows[second.pk].broken) == (0, 1)
        assert rows[second.pk].p_value == 1.0  # McNemar b=0, c=1: 2 × ½ = 1
        assert rows[broken.pk].accuracy is None and rows[broken.pk].errors == 4
        assert rows[broken.pk].paired_n == 0
        assert rows[first.pk].by_category == {"arithmetic": 1 / 3, "facts": 0.0}
        table = report.markdown_table(summary)
        assert "25.0% [0.0, 75.0]" in table  # one of four right: the bootstrap's range
        assert "| 0 / 1 of 4 |" in table
        assert summary.grid[0][1][2].state == "error"
        rows_out = list(csv.DictReader(io.StringIO(report.results_csv(summary))))
        assert len(rows_out) == 12
        assert rows_out[0]["answer"] == "Let me see.\nAnswer: 4" and rows_out[0]["correct"] == "1"
        assert "model not found" in rows_out[2]["error"] and rows_out[2]["status"] == "error"
    finally:
        kit.close()


def test_a_stopped_evaluation_keeps_what_finished_and_resumes_with_the_rest():
    kit = ScriptedPanel(seats=1)
    try:
        kit.seats[0].default = Reply.stream(["Answer: 4"], first_delay=0.3)
        evaluation = seats_alone(kit)

        async def stop_after_two():
            task = asyncio.create_task(harness.evaluate(evaluation.pk))
            results = Result.objects.filter(evaluation=evaluation)
            await until(lambda: asyncio.to_thread(lambda: results.count() >= 2), 30, "two results")
            await asyncio.to_thread(control.stop, evaluation)
            return await task

        assert loop.run(stop_after_two()) == Evaluation.Status.STOPPED
        evaluation.refresh_from_db()
        kept = list(evaluation.results.values_list("pk", "item__key"))
        assert 2 <= len(kept) < 4
        assert "resume to finish" in evaluation.detail
        # The run in flight when the stop came was cancelled, not saved as a result.
        assert evaluation.results.filter(status="error").count() == 0

        Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.QUEUED)
        assert evaluate(evaluation.pk) == Evaluation.Status.DONE
        evaluation.refresh_from_db()
        assert evaluation.results.count() == 4 and evaluation.attempts == 2
        assert set(kept) <= set(evaluation.results.values_list("pk", "item__key"))
    finally:
        kit.close()


def test_a_second_runner_leaves_a_held_evaluation_alone():
    kit = ScriptedPanel(seats=1)
    try:
        kit.seats[0].default = Reply.stream(["Answer: 4"], first_delay=0.5)
        evaluation = seats_alone(kit)

        async def two_at_once():
            first = asyncio.create_task(harness.evaluate(evaluation.pk))
            held = harness.lease_key(evaluation.pk)
            client = live.sync_redis()
            try:
                await until(lambda: client.exists(held), 10, "the first runner's lease")
            finally:
                client.close()
            second = await harness.evaluate(evaluation.pk)
            return await first, second

        assert loop.run(two_at_once()) == (Evaluation.Status.DONE, None)
        assert Result.objects.filter(evaluation=evaluation).count() == 4
    finally:
        kit.close()


def test_a_grader_that_returns_nonsense_makes_grading_errors_not_wrong_answers():
    kit = ScriptedPanel(seats=1)
    grader_server = ScriptedServer().__enter__()
    try:
        kit.seats[0].default = Reply.stream(["The sky is blue because of Rayleigh scattering."])
        grader_server.default = Reply.stream(["Looks good to me!"])
        provider = Provider.objects.create(name="Grader", base_url=grader_server.base_url)
        grader = CatalogModel.objects.create(
            provider=provider, model_id="grader", display_name="Grader", context_length=8192
        )
        rubric = [
            {
                "id": "sky",
                "task": "Why is the sky blue?",
                "criteria": [{"criterion": "Mentions Rayleigh scattering", "weight": 2}],
            }
        ]
        evaluation = create(
            kit.user,
            dataset_of(kit.user, rubric),
            systems.parse(["seats"], kit.panel, kit.user),
            grader=grader,
        )
        assert evaluate(evaluation.pk) == Evaluation.Status.DONE
        result = Result.objects.get(evaluation=evaluation)
        assert result.status == "grade_error" and result.correct is None
        assert "did not reply with JSON" in result.error
        assert "Rayleigh" in result.answer  # the answer is kept
        # The grader saw the criteria; the system under test never did.
        assert "Mentions Rayleigh scattering" in json.dumps(grader_server.requests[-1]["json"])
        assert "Mentions Rayleigh" not in json.dumps(kit.seats[0].requests[-1]["json"])
    finally:
        kit.close()
        grader_server.__exit__(None, None, None)


def test_limits_are_refused_in_words(settings):
    owner = get_user_model().objects.create_user("limits", password="pw-long-enough-1")
    kit = ScriptedPanel(seats=2, user=owner)
    try:
        dataset = dataset_of(owner)
        specs = systems.parse(["seats", "fusion", "vote"], kit.panel, owner)
        settings.EVAL_MAX_PAIRS = 10
        with pytest.raises(
            control.Refused, match="4 items × 4 systems is 16 runs; the limit is 10"
        ):
            create(owner, dataset, specs)
        settings.EVAL_MAX_PAIRS = 5000
        with pytest.raises(control.Refused, match="needs a grader model"):
            rubric = [{"id": "t", "task": "T", "criteria": [{"criterion": "c"}]}]
            create(owner, dataset_of(owner, rubric), specs)
        with pytest.raises(systems.SystemsError, match="Unknown system 'best'"):
            systems.parse(["best"], kit.panel, owner)
        first = create(owner, dataset, specs)
        assert first.status == Evaluation.Status.QUEUED
        with pytest.raises(control.Refused, match="already have 1 evaluation"):
            create(owner, dataset, specs)
        assert Evaluation.objects.filter(owner=owner).count() == 1  # nothing saved
        Evaluation.objects.filter(pk=first.pk).update(status=Evaluation.Status.STOPPED)
        second = create(owner, dataset, specs)
        first.refresh_from_db()
        with pytest.raises(control.Refused, match="already have 1 evaluation"):
            control.resume(first)
        assert second.status == Evaluation.Status.QUEUED
    finally:
        kit.close()


def test_systems_from_a_panel():
    kit = ScriptedPanel(seats=2, strategy="vote")
    try:
        specs = systems.parse(["seats", "fusion", "vote", "self-fusion"], kit.panel, kit.user)
        labels = [s.label for s in specs]
        assert labels == [
            "Seat 1 alone: Seat-0",
            "Seat 2 alone: Seat-1",
            "Scripted: fusion",
            "Scripted: vote (as saved)",
            "Self-fusion: 3 × Seat-0",
        ]
        alone = specs[0].config
        assert len(alone["seats"]) == 1 and alone["judge"] is None
        assert specs[3].panel == kit.panel and specs[2].panel is None
        fused = specs[4].config
        assert {s["model"]["model_id"] for s in fused["seats"]} == {"seat-0"}
        assert fused["synthesizer"]["model_id"] == "seat-0"
        assert all(s["temperature"] >= 0.7 for s in fused["seats"])
    finally:
        kit.close()


def test_exports_never_start_a_cell_with_a_formula():
    assert report._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert report._cell("-5") == "'-5" and report._cell("@x") == "'@x"
    assert report._cell("Answer: 4") == "Answer: 4" and report._cell(12) == "12"


def test_the_best_single_model_is_chosen_on_the_items_all_of_them_answered():
    kit = ScriptedPanel(seats=2)
    try:
        # Seat 0 answers every item, right on "add" only: 1 of 4.
        kit.seats[0].default = Reply.stream(["Answer: 4"])
        # Seat 1 fails on three items and is right on the one it answers ("add"):
        # 100% of what it answered, yet no better than seat 0 where both answered.
        kit.seats[1].enqueue(Reply.stream(["Answer: 4"]))
        kit.seats[1].default = Reply.json(400, {"error": {"message": "bad request"}})
        evaluation = seats_alone(kit)
        assert evaluate(evaluation.pk) == Evaluation.Status.DONE
        summary = report.summarise(evaluation)
        first, second = summary.rows
        assert (first.accuracy, second.accuracy, second.errors) == (0.25, 1.0, 3)
        assert summary.baseline is first  # tied on the shared item; seat 0 answered more
        assert summary is report.summarise(evaluation)  # computed once per state
    finally:
        kit.close()

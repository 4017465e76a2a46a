"""`manage.py fusion_eval` on scripted upstreams: it evaluates in its own process
(no worker), prints progress and the table with its intervals, writes the report
files, names what is wrong with a bad dataset or system, and resumes by id."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from evals.models import Evaluation
from tests.pipeline_kit import ScriptedPanel
from tests.scripted_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture
def kit(settings):
    settings.EVAL_CONCURRENCY = 1
    kit = ScriptedPanel(seats=2)
    kit.seats[0].default = Reply.stream(["Answer: Paris"])
    kit.seats[1].default = Reply.stream(["Answer: Lyon"])
    yield kit
    kit.close()


def write_dataset(tmp_path, lines) -> str:
    path = tmp_path / "capitals.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_command_prints_the_table_and_writes_the_report(kit, tmp_path):
    items = [
        json.dumps({"id": n, "question": "Capital of France?", "answers": ["Paris"]})
        for n in range(3)
    ]
    out = StringIO()
    call_command(
        "fusion_eval",
        "--dataset",
        write_dataset(tmp_path, items),
        "--panel",
        "scripted",
        "--systems",
        "seats",
        "--user",
        "alice",
        "--out",
        str(tmp_path / "report"),
        stdout=out,
    )
    text = out.getvalue()
    assert "Evaluation" in text and "(6 runs)" in text
    assert "| Seat 1 alone: Seat-0 ★ best single | 100.0% [100.0, 100.0] | baseline |" in text
    second_row = "| Seat 2 alone: Seat-1 | 0.0% [0.0, 0.0] | -100.0 pts [-100.0, -100.0] |"
    assert second_row + " 0.250 | 0 / 3 of 3 |" in text
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == ["report.md", "results.csv", "scatter.svg", "summary.json"]
    report_md = (tmp_path / "report" / "report.md").read_text()
    assert report_md.startswith("```\npython manage.py") and "By category:" in report_md
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert [s["accuracy"] for s in summary["systems"]] == [1.0, 0.0]
    assert summary["systems"][1]["p_value"] == 0.25  # McNemar b=0, c=3: 2 × 1/8
    assert (tmp_path / "report" / "scatter.svg").read_text().startswith("<svg")
    assert Evaluation.objects.get().status == Evaluation.Status.DONE


def test_a_broken_file_is_named_by_line_and_nothing_runs(kit, tmp_path):
    path = write_dataset(tmp_path, ['{"id": 1, "question": "Q", "answers": ["a"]}', "{oops"])
    with pytest.raises(CommandError, match=r"capitals.jsonl: line 2: is not valid JSON"):
        call_command("fusion_eval", "--dataset", path, "--panel", "scripted", "--user", "alice")
    assert not Evaluation.objects.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "no-such-set"], "No dataset 'no-such-set'"),
        (["--dataset", "dev-short", "--systems", "seats,best"], "Unknown system 'best'"),
        (["--dataset", "dev-short", "--panel", "nope"], "no panel 'nope' found"),
        (["--resume", "999"], "No evaluation 999"),
    ],
)
def test_bad_arguments_are_refused_in_words(kit, args, message):
    from evals.datasets import sync_shipped

    sync_shipped()
    with pytest.raises(CommandError, match=message):
        call_command("fusion_eval", "--user", "alice", *args)


def test_a_stopped_evaluation_resumes_by_id(kit, tmp_path):
    items = [json.dumps({"id": n, "question": "Capital?", "answers": ["Paris"]}) for n in range(2)]
    path = write_dataset(tmp_path, items)
    call_command(
        "fusion_eval",
        "--dataset",
        path,
        "--panel",
        "scripted",
        "--systems",
        "seats",
        "--user",
        "alice",
        "--out",
        str(tmp_path / "r1"),
        stdout=StringIO(),
    )
    evaluation = Evaluation.objects.get()
    evaluation.results.filter(item__key="1").delete()  # as if stopped before these
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.STOPPED)
    out = StringIO()
    call_command(
        "fusion_eval",
        "--resume",
        str(evaluation.pk),
        "--user",
        "alice",
        "--out",
        str(tmp_path / "r2"),
        stdout=out,
    )
    evaluation.refresh_from_db()
    assert evaluation.status == Evaluation.Status.DONE and evaluation.results.count() == 4
    assert evaluation.attempts == 2


def test_regrade_grades_the_saved_answers_again_without_calling_models(kit, tmp_path):
    items = [json.dumps({"id": n, "question": "Capital?", "answers": ["Paris"]}) for n in range(2)]
    path = write_dataset(tmp_path, items)
    call_command(
        "fusion_eval",
        *("--dataset", path, "--panel", "scripted", "--systems", "seats", "--user", "alice"),
        *("--out", str(tmp_path / "r1")),
        stdout=StringIO(),
    )
    evaluation = Evaluation.objects.get()
    calls = len(kit.seats[0].requests)
    evaluation.results.filter(correct=True).update(correct=False, score=0.0)  # a grader bug
    out = StringIO()
    call_command(
        "fusion_eval",
        *("--regrade", str(evaluation.pk), "--user", "alice", "--out", str(tmp_path / "r2")),
        stdout=out,
    )
    assert "2 grade(s) changed" in out.getvalue()
    assert evaluation.results.filter(correct=True).count() == 2
    assert len(kit.seats[0].requests) == calls  # no model was asked


def test_skip_items_completes_a_partial_measurement(kit, tmp_path):
    items = [json.dumps({"id": n, "question": "Capital?", "answers": ["Paris"]}) for n in range(4)]
    path = write_dataset(tmp_path, items)
    common = ["--dataset", path, "--panel", "scripted", "--systems", "seats", "--user", "alice"]
    call_command(
        *["fusion_eval", *common, "--limit", "2", "--out", str(tmp_path / "half")],
        stdout=StringIO(),
    )
    first = Evaluation.objects.get()
    rest = tmp_path / "half" / "results.csv"
    call_command(
        *["fusion_eval", *common, "--skip-items", str(rest), "--out", str(tmp_path / "r")],
        stdout=StringIO(),
    )
    second = Evaluation.objects.exclude(pk=first.pk).get()
    keys = {e.pk: set(e.results.values_list("item__key", flat=True)) for e in (first, second)}
    assert len(keys[first.pk]) == 2 and keys[first.pk] | keys[second.pk] == {"0", "1", "2", "3"}
    assert not keys[first.pk] & keys[second.pk]  # each item measured once

    with pytest.raises(CommandError, match="every item of the dataset is skipped"):
        call_command(
            *[
                "fusion_eval",
                *common,
                "--skip-items",
                str(tmp_path / "r" / "results.csv"),
                "--skip-items",
                str(rest),
            ],
            stdout=StringIO(),
        )
    with pytest.raises(CommandError, match="Cannot read"):
        call_command(*["fusion_eval", *common, "--skip-items", str(tmp_path / "none.csv")])

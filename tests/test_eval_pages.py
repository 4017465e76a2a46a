"""The Evaluations pages: import a dataset (or be told, by line, why not), start an
evaluation (its task is queued on the broker), see only your own, export, delete."""

import json

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.models import Conversation
from evals import control, datasets, systems
from evals.models import Dataset, Evaluation, Result
from tests.pipeline_kit import ScriptedPanel

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = "\n".join(
    json.dumps({"id": n, "question": f"{n} + 1?", "answers": [str(n + 1)]}) for n in range(3)
)


@pytest.fixture
def kit(client):
    kit = ScriptedPanel(seats=2)
    client.force_login(kit.user)
    yield kit
    kit.close()


def test_a_good_file_is_imported_and_listed(client, kit):
    upload = SimpleUploadedFile("sums.jsonl", GOOD.encode())
    response = client.post(reverse("evals:upload"), {"name": "Sums", "file": upload}, follow=True)
    dataset = Dataset.objects.get(owner=kit.user)
    assert (dataset.kind, dataset.item_count, dataset.items.count()) == ("short", 3, 3)
    assert "Imported 3 items into Sums" in response.content.decode()
    assert "2 + 1?" in client.get(reverse("evals:dataset", args=[dataset.pk])).content.decode()


def test_a_broken_file_names_its_line_and_imports_nothing(client, kit):
    broken = GOOD + '\n{"id": 0, "question": "again", "answers": ["x"]}\n'
    upload = SimpleUploadedFile("sums.jsonl", broken.encode())
    response = client.post(reverse("evals:upload"), {"name": "Sums", "file": upload})
    assert response.status_code == 400
    page = response.content.decode().replace("&#x27;", "'")
    assert "Nothing was imported: line 4 field 'id': id '0' is already used on line 1" in page
    assert not Dataset.objects.filter(owner=kit.user).exists()


def test_an_oversized_upload_is_refused_by_its_size(client, kit, settings):
    settings.EVAL_DATASET_MAX_BYTES = 100_000
    upload = SimpleUploadedFile("big.jsonl", b"x" * 300_000)
    response = client.post(reverse("evals:upload"), {"name": "Big", "file": upload})
    assert response.status_code == 413
    assert (
        "the limit is 0 MB" in response.content.decode() or "limit is" in response.content.decode()
    )
    assert not Dataset.objects.filter(owner=kit.user).exists()


@pytest.mark.usefixtures("redis_ready")
def test_starting_from_the_page_queues_the_task(client, kit, settings):
    # A queue no worker of the suite reads, so the task is still there to be seen.
    settings.EVAL_QUEUE = "eval-pages-test"
    datasets.sync_shipped()
    shipped = Dataset.objects.get(slug="dev-short", owner=None)
    response = client.post(
        reverse("evals:create"),
        {
            "dataset": shipped.pk,
            "item_limit": 4,
            "panel": kit.panel.pk,
            "from_panel": ["seats", "vote"],
            "name": "Mine",
        },
    )
    evaluation = Evaluation.objects.get(owner=kit.user)
    assert response.status_code == 302 and response["Location"] == evaluation.get_absolute_url()
    assert (evaluation.status, evaluation.total, evaluation.systems.count()) == ("queued", 12, 3)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    ours = [
        m
        for m in broker.lrange(settings.EVAL_QUEUE, 0, -1)
        if json.loads(m)["headers"]["task"] == "evals.run_evaluation"
        and json.loads(m)["headers"]["argsrepr"] == f"[{evaluation.pk}]"
    ]
    assert len(ours) == 1
    broker.delete(settings.EVAL_QUEUE)
    progress = client.get(reverse("evals:progress", args=[evaluation.pk])).json()
    assert progress == {
        "status": "queued",
        "done": 0,
        "errors": 0,
        "total": 12,
        "percent": 0,
        "eta_s": None,
        "detail": "",
    }


def test_a_form_without_systems_says_so(client, kit):
    datasets.sync_shipped()
    shipped = Dataset.objects.get(slug="dev-short", owner=None)
    response = client.post(reverse("evals:create"), {"dataset": shipped.pk, "panel": kit.panel.pk})
    assert response.status_code == 400
    assert "Name at least one system" in response.content.decode()


def _finished_evaluation(kit) -> Evaluation:
    kind, items = datasets.parse(GOOD.splitlines())
    dataset = datasets.save(kit.user, "Sums", kind, items, source="test")
    specs = systems.parse(["seats"], kit.panel, kit.user)
    evaluation = control.create(kit.user, dataset, specs, enqueue_it=False)
    conversation = Conversation.objects.create(owner=kit.user, hidden=True)
    from chat.engine.runs import create_run

    run = create_run(conversation, "1 + 1?", {"evaluation": evaluation.pk}).run
    for system in evaluation.systems.all():
        for item in dataset.items.all():
            Result.objects.create(
                evaluation=evaluation,
                system=system,
                item=item,
                run=run,
                status="graded",
                answer=f"Answer: {item.data['answers'][0]}",
                correct=system.position == 0,
                score=float(system.position == 0),
                latency_ms=100,
            )
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Evaluation.Status.DONE)
    return evaluation


def test_an_evaluation_is_its_owners_alone(client, kit, bob):
    evaluation = _finished_evaluation(kit)
    page = client.get(evaluation.get_absolute_url()).content.decode()
    assert "100.0% [100.0, 100.0]" in page and "-100.0 pts" in page
    assert client.get(reverse("evals:chart", args=[evaluation.pk]))["Content-Type"] == (
        "image/svg+xml"
    )
    csv_text = client.get(reverse("evals:export_csv", args=[evaluation.pk])).content.decode()
    assert csv_text.count("Answer: ") == 6
    summary = client.get(reverse("evals:export_json", args=[evaluation.pk])).json()
    assert [s["accuracy"] for s in summary["systems"]] == [1.0, 0.0]

    client.force_login(bob)
    for name in ("detail", "progress", "table", "export_csv", "export_json", "chart"):
        assert client.get(reverse(f"evals:{name}", args=[evaluation.pk])).status_code == 404
    assert client.post(reverse("evals:stop", args=[evaluation.pk])).status_code == 404
    assert client.post(reverse("evals:delete", args=[evaluation.pk])).status_code == 404


def test_deleting_an_evaluation_removes_its_hidden_runs(client, kit):
    evaluation = _finished_evaluation(kit)
    assert Conversation.objects.filter(hidden=True).count() == 1
    response = client.post(reverse("evals:delete", args=[evaluation.pk]))
    assert response.status_code == 302
    assert not Evaluation.objects.exists() and not Result.objects.exists()
    assert not Conversation.objects.filter(hidden=True).exists()
    assert (
        Conversation.objects.filter(owner=kit.user, hidden=False).count() == 1
    )  # the conversation kept


def test_evaluation_runs_stay_out_of_the_conversation_list(client, kit):
    _finished_evaluation(kit)
    page = client.get(reverse("chat:home")).content.decode()
    assert "1 + 1?" not in page

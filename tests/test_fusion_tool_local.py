"""The fusion server tool on the bundled models, through the official `openai` client:
the real Qwen2.5-Coder 1.5B, told it must call the panel, calls it (written as text,
parsed), the Local models answer, the real 1.5B analyses, and the model answers from the
analysis. And the real judge fills `partial_coverage` when only some drafts (scripted,
so the coverage is known) make a point.

Slow (real decoding on two cores): two tests, run once, in the SQLite pass."""

import asyncio

import pytest
from django.db import connection

from chat.models import Run
from panels.catalog import sync_site_providers
from panels.models import CatalogModel
from tests.pipeline_kit import ScriptedPanel, run_and_listen
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.models, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def local_models(db):
    if connection.vendor != "sqlite":
        pytest.skip("real-model answers do not depend on the database: run in the SQLite pass")
    sync_site_providers()


def test_the_bundled_1_5b_consults_the_local_models_when_required(local_models, openai_client):
    reply = openai_client.chat.completions.create(
        model="qwen2.5-coder-1.5b",
        messages=[{"role": "user", "content": "Is 391 a prime number? Answer yes or no."}],
        tools=[
            {
                "type": "openrouter:fusion",
                "parameters": {
                    "analysis_models": ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"],
                    "max_completion_tokens": 96,
                },
            }
        ],
        tool_choice="required",
        max_tokens=120,
        temperature=0,
    )
    usage = reply.usage.model_dump()
    assert usage["server_tool_use"]["fusion_requests"] == 1, usage
    text = reply.choices[0].message.content or ""
    assert text.strip(), reply
    assert "fusion" not in text.lower().split("```")[0][:20]  # an answer, not a call

    run = Run.objects.get(message__conversation__owner__username="alice")
    assert run.status == Run.Status.DONE, run.failure_detail
    answers = list(run.answers.order_by("position"))
    assert [a.role for a in answers] == ["seat", "seat", "seat", "judge"]
    outer, *panel = answers
    assert outer.model_key == "qwen2.5-coder-1.5b" and outer.tool_steps
    assert outer.tool_steps[0]["name"] == "fusion"
    assert {a.model_key for a in panel[:2]} == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}
    assert all(a.status == "done" and a.text.strip() for a in panel)
    assert run.analysis is not None and run.analysis["scores"], run.analysis
    assert run.final_answer.pk == outer.pk and run.final_answer.text == text


DRAFTS = [
    "Canberra is the capital of Australia. Parliament moved there in 1927.",
    "The capital is Canberra; Parliament has sat there since 1927.",
    "Canberra.",
]


def test_the_bundled_judge_reports_a_point_only_some_drafts_made(local_models, model_servers):
    """Three scripted drafts, two of which give the year Parliament moved; the real
    1.5B judges. The point is partly covered: named with the drafts that made it."""
    kit = ScriptedPanel(seats=3)
    try:
        qwen = CatalogModel.objects.get(model_id="qwen2.5-coder-1.5b")
        kit.panel.judge = qwen  # the run is configured from this object
        kit.panel.save(update_fields=["judge"])
        for seat, draft in zip(kit.seats, DRAFTS, strict=True):
            seat.enqueue(Reply.stream([draft]))
        kit.synthesizer.enqueue(Reply.stream(["Canberra (Parliament since 1927)."]))
        run_id = kit.ask(
            "What is the capital of Australia, and since when does Parliament sit there?"
        )
        asyncio.run(run_and_listen(kit, run_id, timeout=240))
        run = Run.objects.get(pk=run_id)
        assert run.status == Run.Status.DONE, run.failure_detail
        judged = [(a.status, a.error, a.text[:400]) for a in run.answers.filter(role="judge")]
        assert run.analysis is not None, f"no analysis: {judged} {run.decisions}"
        partial = run.analysis["partial_coverage"]
        assert partial, f"the judge reported no partly covered point: {run.analysis}"
        # Whatever words the judge chose, the year is the point two drafts made.
        # (Labels are shuffled: the run keeps which answer each one was.)
        text_of = {a.pk: a.text for a in run.answers.all()}
        made = [
            sorted(text_of[run.analysis["labels"][label]] for label in item["labels"])
            for item in partial
            if "1927" in item["point"]
        ]
        assert made == [sorted(DRAFTS[:2])], partial
        print("partial_coverage:", partial)
    finally:
        kit.close()

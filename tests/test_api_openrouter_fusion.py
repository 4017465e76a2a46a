"""A caller written for OpenRouter's Fusion, through the official `openai` client,
against the live stack (Daphne, a Celery worker, Redis): the `openrouter/fusion`
alias with the `fusion` plugin in `extra_body`, our `fusion.panel` recipe, and the
hosted service's response fields. The panel's models are scripted upstreams on
loopback, so every answer is known and one of them can fail."""

import httpx
import openai
import pytest
from django.contrib.auth import get_user_model

from chat.models import Answer, Conversation, Run
from panels.models import CatalogModel, Provider
from tests.pipeline_kit import GOOD_ANALYSIS, ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

QUESTION = [{"role": "user", "content": "What is the capital of Australia?"}]


@pytest.fixture
def kit(alice):
    """Three scripted seats (seat-0 says Canberra, seat-1 answers 500, seat-2 says
    Sydney), a scripted judge and synthesizer, all site models anyone may call."""
    kit = ScriptedPanel(seats=3, user=alice)
    kit.seats[0].default = Reply.stream(["Canberra."])
    kit.seats[1].default = Reply.json(500, {"error": {"message": "upstream broke"}})
    kit.seats[2].default = Reply.stream(["Sydney."])
    yield kit
    kit.close()


def plugin(**fields) -> dict:
    return {"plugins": [{"id": "fusion", **fields}]}


def test_the_fusion_plugin_answers_with_the_hosted_services_fields(openai_client, kit):
    kit.judge.enqueue(analysis_reply(), Reply.stream(["Canberra is the capital."]))
    response = openai_client.chat.completions.create(
        model="openrouter/fusion",
        messages=QUESTION,
        temperature=0.2,
        extra_body=plugin(
            analysis_models=["seat-0", "up-seat-1/seat-1", "seat-2"],
            model="judge",
            temperature=0.9,
            max_tool_calls=2,
        ),
    )
    assert response.model == "openrouter/fusion"
    assert response.choices[0].message.content == "Canberra is the capital."
    extra = response.model_extra
    run = Run.objects.get(pk=extra["fusion"]["run"])

    # The contradiction names the models that took each stance, not the judge's labels.
    labels = run.analysis["labels"]
    model_of = {a.pk: a.model_key for a in run.answers.all()}
    [disputed] = GOOD_ANALYSIS["contradictions"]
    expected = [
        {"model": model_of[labels[label]], "stance": stance}
        for label, stance in disputed["positions"].items()
    ]
    analysis = extra["analysis"]
    assert analysis["contradictions"] == [
        {"topic": "which city", "stances": expected, "verdict": disputed["verdict"]}
    ]
    assert {s["model"] for s in expected} == {"seat-0", "seat-2"}
    assert analysis["consensus"] == GOOD_ANALYSIS["consensus"]
    assert analysis["blind_spots"] == GOOD_ANALYSIS["blind_spots"]
    # The scripted judge said A and C covered a point; only A answered of the two, as
    # seat-0 (C, seat-1, failed, so its label was never given out), and only A's text
    # has the year: a point one answer makes is that answer's insight
    # (analysis.checked_coverage), not a partly covered one.
    assert analysis["unique_insights"] == [
        {"model": model_of[labels["A"]], "insight": "mentions 1913"},
        {"model": model_of[labels["A"]], "insight": "parliament moved there in 1927"},
    ]
    assert analysis["partial_coverage"] == []

    assert extra["responses"] == [
        {"model": "seat-0", "content": "Canberra."},
        {"model": "seat-2", "content": "Sydney."},
    ]
    [failed] = extra["failed_models"]
    assert failed["model"] == "seat-1" and failed["status_code"] == 500
    assert "upstream broke" in failed["error"] or "500" in failed["error"]
    assert extra["failure_reason"] is None

    # An ad-hoc panel: the plugin's models and settings, the judge writing the final
    # answer, nothing saved as a panel; the run is in alice's history all the same.
    assert run.panel is None and run.config["panel"] is None
    assert [s["model"]["model_id"] for s in run.config["seats"]] == ["seat-0", "seat-1", "seat-2"]
    assert {(s["temperature"], s["max_tool_calls"]) for s in run.config["seats"]} == {(0.9, 2)}
    assert run.config["synthesizer"]["model_id"] == "judge"
    assert run.message.conversation.owner.username == "alice"
    seat_temperatures = [kit.seats[i].requests[0]["json"]["temperature"] for i in (0, 2)]
    judge_call, synthesis_call = kit.judge.requests
    assert seat_temperatures == [0.9, 0.9]
    assert judge_call["json"]["temperature"] == 0  # the judge always runs at 0
    assert synthesis_call["json"]["temperature"] == 0.2  # the outer request's
    assert kit.synthesizer.requests == []


def test_a_failed_judge_still_answers_with_the_panels_responses_streamed(openai_client, kit):
    kit.judge.default = Reply.json(500, {"error": {"message": "judge down"}})
    stream = openai_client.chat.completions.create(
        model="openrouter/fusion",
        messages=QUESTION,
        stream=True,
        extra_body=plugin(analysis_models=["seat-0", "seat-2"], model="judge"),
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Canberra."  # the first seat that answered, unfused
    [last] = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert last.choices[0].finish_reason == "stop"
    extra = last.model_extra
    assert extra["analysis"] is None
    assert extra["failure_reason"] == "judge_upstream_error"
    assert extra["responses"] == [
        {"model": "seat-0", "content": "Canberra."},
        {"model": "seat-2", "content": "Sydney."},
    ]
    assert extra["failed_models"] == []


def test_an_inline_recipe_is_a_panel_for_one_request(openai_client, kit):
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra, by the recipe."]))
    recipe = {
        "schema": 2,
        "name": "Two of them",
        "seats": [
            {"model": {"provider": "Up seat-0", "model": "seat-0"}},
            {"model": {"provider": "Up seat-2", "model": "seat-2"}},
        ],
        "judge": {"provider": "Up judge", "model": "judge"},
        "synthesizer": {"provider": "Up synth", "model": "synth"},
    }
    before = Run.objects.count()
    response = openai_client.chat.completions.create(
        model="fusion", messages=QUESTION, extra_body={"fusion": {"panel": recipe}}
    )
    assert response.choices[0].message.content == "Canberra, by the recipe."
    assert {r["model"] for r in response.model_extra["responses"]} == {"seat-0", "seat-2"}
    assert response.model_extra["analysis"]["consensus"] == GOOD_ANALYSIS["consensus"]
    assert Run.objects.count() == before + 1
    assert not Answer.objects.filter(model_key="seat-1").exists()


def test_bad_fusion_requests_are_refused_naming_the_field_and_run_nothing(
    openai_client, kit, live_stack
):
    bob = get_user_model().objects.create_user("bob", password="pw-long-enough-1")
    bobs = Provider.objects.create(name="Bobs", owner=bob, base_url="https://bob.example/v1")
    CatalogModel.objects.create(provider=bobs, model_id="bobs-model", display_name="Bob's")
    conversations, runs = Conversation.objects.count(), Run.objects.count()

    def refused(extra_body: dict, model="openrouter/fusion") -> dict:
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.chat.completions.create(
                model=model, messages=QUESTION, extra_body=extra_body
            )
        return caught.value.body

    empty = refused(plugin(analysis_models=[]))
    assert empty["param"] == "plugins[0].analysis_models"
    assert "1 to 8" in empty["message"] and empty["type"] == "invalid_request_error"
    nine = refused(plugin(analysis_models=["seat-0"] * 9))
    assert nine["param"] == "plugins[0].analysis_models" and "it has 9" in nine["message"]
    bobs_model = refused(plugin(analysis_models=["seat-0", "bobs-model"]))
    assert bobs_model["param"] == "plugins[0].analysis_models[1]"
    assert "`bobs-model` is not a model you can use here" in bobs_model["message"]
    bad_recipe = refused({"fusion": {"panel": {"schema": 2, "name": "x", "seats": []}}}, "fusion")
    assert bad_recipe["param"] == "fusion.panel.seats"
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.chat.completions.create(
            model="nobody/nothing", messages=QUESTION, extra_body=plugin(analysis_models=["seat-0"])
        )
    assert missing.value.body["code"] == "model_not_found"
    # The hosted service's depth header counts as ours.
    deep = httpx.post(
        f"{live_stack.url}/v1/chat/completions",
        json={"model": "openrouter/fusion", "messages": QUESTION},
        headers={
            "Authorization": f"Bearer {openai_client.api_key}",
            "X-OpenRouter-Fusion-Depth": "2",
        },
    )
    assert deep.status_code == 508 and deep.json()["error"]["code"] == "fusion_depth_exceeded"

    assert (Conversation.objects.count(), Run.objects.count()) == (conversations, runs)
    assert all(not server.requests for server in kit.seats)

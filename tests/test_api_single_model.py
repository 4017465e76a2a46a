"""One catalog model through the same key, with the official `openai` client against
the live stack (Daphne, a Celery worker, Redis): listed by GET /v1/models beside
the panels, answering alone when named, recorded, costed and in its owner's history
like any run; the caller's stop and seed reach the call that writes the answer."""

import json

import openai
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Run
from panels.models import CatalogModel, Provider
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}  # $0.10 + $0.10 at the prices below


def _scripted_model(server, provider_name: str, model_id: str, owner=None) -> CatalogModel:
    provider = Provider.objects.create(name=provider_name, base_url=server.base_url, owner=owner)
    return CatalogModel.objects.create(
        provider=provider,
        model_id=model_id,
        display_name=model_id.title(),
        context_length=16000,
        input_price="100",  # USD a million tokens
        output_price="200",
    )


def test_models_lists_panels_then_the_models_the_key_may_use(openai_client, alice, server, smollm2):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    bob = get_user_model().objects.create_user("bob", password="pw-long-enough-1")
    hidden = _scripted_model(server, "Bob's key", "bobs-model", owner=bob)
    listed = {m.id: m.model_extra for m in openai_client.models.list()}
    ids = list(listed)
    assert ids[:2] == ["fusion", "fusion/local"]
    assert {"smollm2-135m", "scripted-1"} <= set(ids)
    assert "bobs-model" not in ids and not any(i.endswith("/bobs-model") for i in ids)
    assert listed["scripted-1"]["context_length"] == 16000
    assert listed["scripted-1"]["pricing"] == {"prompt": "0.0001", "completion": "0.0002"}
    assert listed["smollm2-135m"]["pricing"] == {"prompt": "0", "completion": "0"}
    assert listed["smollm2-135m"]["context_length"] == smollm2.context_length
    model = openai_client.models.list().data[ids.index("scripted-1")]
    assert (model.object, model.owned_by) == ("model", "Scripted Cloud")
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model=hidden.model_id, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert not server.requests


@pytest.mark.models
def test_a_bundled_local_model_answers_alone_by_its_id(openai_client, alice, smollm2):
    response = openai_client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        max_tokens=24,
    )
    answer = response.choices[0].message.content
    assert answer.strip() and response.model == "smollm2-135m"
    assert response.usage.total_tokens > 0
    fusion = response.model_extra["fusion"]
    assert fusion["panel"] is None and [s["status"] for s in fusion["seats"]] == ["done"]
    run = Run.objects.get(pk=fusion["run"])
    conversation = run.message.conversation
    assert (conversation.owner, conversation.model, conversation.panel) == (alice, smollm2, None)
    assert run.final_answer.text == answer and run.config["via"] == "api"
    # The caller's max_tokens is the model's own limit when it answers alone.
    assert run.final_answer.output_tokens <= 24


def test_a_model_alone_gets_stop_seed_and_is_costed_in_the_history(openai_client, alice, server):
    _scripted_model(server, "Scripted Cloud", "scripted-1")
    server.default = Reply.stream(["Hello ", "there."], usage=USAGE)
    response = openai_client.chat.completions.create(
        model="scripted-1",
        messages=[{"role": "user", "content": "Greet me."}],
        stop=["END", "\n\n"],
        seed=7,
        temperature=0.2,
        max_tokens=20,
        n=1,
        extra_body={"frequency_penalty": 0, "a_field_nobody_defined": {"x": 1}},
    )
    assert response.choices[0].message.content == "Hello there."
    sent = server.requests[0]["json"]
    assert sent["stop"] == ["END", "\n\n"] and sent["seed"] == 7
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 20)
    assert "a_field_nobody_defined" not in sent
    assert response.usage.cost == pytest.approx(0.2)
    run = Run.objects.get(pk=response.model_extra["fusion"]["run"])
    assert float(run.cost_usd) == pytest.approx(0.2) and run.status == Run.Status.DONE
    conversation = run.message.conversation
    browser = Client()
    browser.force_login(alice)
    assert conversation.title in browser.get(reverse("chat:home")).content.decode()
    conversation = browser.get(conversation.get_absolute_url()).content.decode()
    assert "Hello there." in conversation and "$0.2" in conversation


def test_a_model_alone_streams_and_the_qualified_id_reaches_the_right_provider(
    openai_client, server, live_stack
):
    from tests.scripted_server import ScriptedServer

    _scripted_model(server, "Scripted Cloud", "scripted-1")
    with ScriptedServer() as mirror:
        _scripted_model(mirror, "Scripted Mirror", "scripted-1")
        ids = [m.id for m in openai_client.models.list()]
        assert "scripted-1" in ids and "scripted-mirror/scripted-1" in ids
        mirror.default = Reply.stream(["From ", "the mirror."], usage=USAGE)
        stream = openai_client.chat.completions.create(
            model="scripted-mirror/scripted-1",
            messages=[{"role": "user", "content": "Who are you?"}],
            stream=True,
            stream_options={"include_usage": True},
            stop="END",
        )
        chunks = list(stream)
        assert len(mirror.requests) == 1 and mirror.requests[0]["json"]["stop"] == ["END"]
    assert not server.requests  # the oldest `scripted-1` was not the one named
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "From the mirror."
    assert chunks[-1].usage.cost == pytest.approx(0.2)
    conversation = Conversation.objects.get(pk=Run.objects.get().message.conversation_id)
    assert conversation.model.provider.name == "Scripted Mirror"


def test_a_panels_synthesizer_gets_stop_and_seed_and_its_seats_do_not(openai_client, alice):
    kit = ScriptedPanel(seats=2, user=alice)
    try:
        for seat in kit.seats:
            seat.default = Reply.stream(["Canberra."])
        kit.judge.default = analysis_reply()
        kit.synthesizer.default = Reply.stream(["Canberra is the capital."])
        response = openai_client.chat.completions.create(
            model=f"fusion/{kit.panel.slug}",
            messages=[{"role": "user", "content": "Capital of Australia?"}],
            stop="END",
            seed=3,
        )
        assert response.choices[0].message.content == "Canberra is the capital."
        synthesis = kit.synthesizer.requests[0]["json"]
        assert synthesis["stop"] == ["END"] and synthesis["seed"] == 3
        for upstream in [*kit.seats, kit.judge]:
            sent = upstream.requests[0]["json"]
            assert not {"stop", "seed"} & sent.keys(), json.dumps(sent)[:200]
    finally:
        kit.close()

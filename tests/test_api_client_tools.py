"""Client tools and JSON modes through the official `openai` client, against the live
stack (Daphne, a Celery worker, Redis): a panel of scripted upstreams for tool calls
(small local models are unreliable tool callers), the real local model for JSON."""

import json

import openai
import pytest

from chat.models import Run
from panels.models import CatalogModel, Panel, Provider, Seat
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION = {"role": "user", "content": "What is the weather in Paris right now?"}
RESULT = "18 degrees and sunny"


@pytest.fixture
def kit(alice):
    kit = ScriptedPanel(seats=2, user=alice)
    for server in kit.seats:
        server.default = Reply.stream(["I would call get_weather with city Paris."])
    kit.judge.default = analysis_reply()
    yield kit
    kit.close()


def _streamed(stream) -> tuple[str, list[dict], str]:
    """(text, tool calls, finish reason) joined from a stream's chunks, as a client does."""
    text, calls, finish = "", {}, ""
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for part in choice.delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                call["name"] = (part.function and part.function.name) or call["name"]
                call["arguments"] += (part.function and part.function.arguments) or ""
            finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish


def _ask(openai_client, kit, stream: bool, messages: list) -> tuple[str, list[dict], str]:
    reply = openai_client.chat.completions.create(
        model=f"fusion/{kit.panel.slug}", messages=messages, tools=[WEATHER], stream=stream
    )
    if stream:
        return _streamed(reply)
    message = reply.choices[0].message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]
    return message.content or "", calls, reply.choices[0].finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_tool_round_trip(openai_client, kit, stream):
    """The synthesizer calls the caller's tool; the caller runs it and sends the
    result back; the panel's next answer uses it."""
    kit.synthesizer.enqueue(
        Reply.tool_calls([("call_w1", "get_weather", '{"city": "Paris"}')]),
        Reply.stream([f"It is {RESULT} in Paris."]),
    )
    text, calls, finish = _ask(openai_client, kit, stream, [QUESTION])
    assert finish == "tool_calls" and text == ""
    assert calls == [{"id": "call_w1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]
    synthesis = kit.synthesizer.requests[0]["json"]
    assert synthesis["tools"] == [WEATHER]  # the synthesizer is sent the tools for real
    for seat in kit.seats:  # the seats read them, and call nothing
        sent = seat.requests[0]["json"]
        assert "tools" not in sent and "get_weather" in sent["messages"][0]["content"]

    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {k: c[k] for k in ("name", "arguments")},
            }
            for c in calls
        ],
    }
    tool = {"role": "tool", "tool_call_id": "call_w1", "content": RESULT}
    text, calls, finish = _ask(openai_client, kit, stream, [QUESTION, assistant, tool])
    assert (text, calls, finish) == (f"It is {RESULT} in Paris.", [], "stop")
    prompt = json.dumps(kit.synthesizer.requests[1]["json"]["messages"])
    assert f'get_weather({{\\"city\\": \\"Paris\\"}}) returned: {RESULT}' in prompt
    assert all(RESULT in json.dumps(seat.requests[1]["json"]["messages"]) for seat in kit.seats)
    runs = Run.objects.filter(message__conversation__panel=kit.panel).order_by("pk")
    assert [run.status for run in runs] == ["done", "done"]
    assert runs[0].synthesis.client_tool_calls[0]["id"] == "call_w1"


def test_one_model_alone_is_sent_the_tools_and_its_calls_are_the_answer(openai_client, alice):
    with ScriptedServer() as server:
        provider = Provider.objects.create(name="Up alone", base_url=server.base_url)
        model = CatalogModel.objects.create(
            provider=provider, model_id="alone", display_name="Alone", supports_tools=True
        )
        Seat.objects.create(panel=Panel.objects.create(owner=alice, slug="alone"), model=model)
        server.enqueue(Reply.tool_calls([("call_a", "get_weather", '{"city": "Paris"}')]))
        reply = openai_client.chat.completions.create(
            model="fusion/alone",
            messages=[QUESTION],
            tools=[WEATHER],
            tool_choice="required",
            parallel_tool_calls=False,
        )
        sent = server.requests[0]["json"]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].id == "call_a"
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "required"
    assert sent["parallel_tool_calls"] is False
    assert "get_weather" not in json.dumps(sent["messages"])  # sent the tools, not told of them
    assert Run.objects.get().status == "done"


def test_tools_are_refused_where_the_panel_cannot_honour_them(openai_client, kit):
    CatalogModel.objects.filter(model_id="synth").update(supports_tools=False)
    expected = {
        "fusion/scripted": "The synthesizer of the panel `scripted`, Synth, cannot call",
        "fusion/local": "The panel `local` answers by verify",
    }
    for model, words in expected.items():
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client.chat.completions.create(model=model, messages=[QUESTION], tools=[WEATHER])
        error = caught.value.body
        assert error["param"] == "tools" and error["code"] == "tools_unsupported"
        assert error["message"].startswith(words)
    assert not Run.objects.exists() and sum(kit.calls().values()) == 0  # nothing half-run
    # With tool_choice "none" nothing is offered, so nothing needs honouring.
    kit.synthesizer.enqueue(Reply.stream(["Sunny, probably."]))
    reply = openai_client.chat.completions.create(
        model=f"fusion/{kit.panel.slug}", messages=[QUESTION], tools=[WEATHER], tool_choice="none"
    )
    assert reply.choices[0].message.content == "Sunny, probably."
    assert "tools" not in kit.synthesizer.requests[0]["json"]


def test_bad_tools_and_orphan_tool_messages_are_refused_naming_the_field(openai_client, kit):
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=f"fusion/{kit.panel.slug}", messages=[QUESTION], tools=[bad]
        )
    assert caught.value.body["param"] == "tools[0].function.parameters"
    assert "not a valid JSON Schema" in caught.value.body["message"]
    orphan = {"role": "tool", "tool_call_id": "call_nobody", "content": RESULT}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=f"fusion/{kit.panel.slug}", messages=[QUESTION, orphan], tools=[WEATHER]
        )
    assert caught.value.body["param"] == "messages[1].tool_call_id"
    assert "call_nobody" in caught.value.body["message"]
    assert not Run.objects.exists() and sum(kit.calls().values()) == 0


CITY = {
    "type": "json_schema",
    "json_schema": {
        "name": "capital",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
            "required": ["country", "capital"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_fenced_json_answer_reaches_the_caller_as_json(openai_client, kit, stream):
    kit.synthesizer.enqueue(
        Reply.stream(['```json\n{"country": "France", ', '"capital": "Paris"}\n```'])
    )
    reply = openai_client.chat.completions.create(
        model=f"fusion/{kit.panel.slug}", messages=[QUESTION], response_format=CITY, stream=stream
    )
    text = _streamed(reply)[0] if stream else reply.choices[0].message.content
    assert json.loads(text) == {"country": "France", "capital": "Paris"}
    assert not text.startswith("```")
    sent = kit.synthesizer.requests[0]["json"]
    assert sent["response_format"] == CITY  # a hosted server gets the caller's format
    assert "JSON Schema" in sent["messages"][0]["content"]
    assert all(s.requests[0]["json"]["response_format"] == CITY for s in kit.seats)


def test_an_answer_out_of_format_is_a_502_with_an_excerpt(openai_client, kit):
    kit.synthesizer.enqueue(Reply.stream(["Paris is the capital of France."]))
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(
            model=f"fusion/{kit.panel.slug}",
            messages=[QUESTION],
            response_format={"type": "json_object"},
        )
    assert caught.value.status_code == 502
    error = caught.value.body
    assert error["code"] == "format_mismatch"
    assert "did not match the response_format" in error["message"]
    assert "not valid JSON" in error["message"] and "Paris is the capital" in error["message"]


def test_tool_choice_required_is_asked_once_more_then_a_502(openai_client, kit):
    """A synthesizer that writes text where tool_choice demands a call is asked once
    more, told so; a call then is the answer, text again fails the run with
    `tool_choice_unmet` (chat/engine/client_tools.py)."""
    ask = {"model": f"fusion/{kit.panel.slug}", "messages": [QUESTION], "tools": [WEATHER]}
    kit.synthesizer.enqueue(
        Reply.stream(["It is probably sunny."]),
        Reply.tool_calls([("call_r1", "get_weather", '{"city": "Paris"}')]),
    )
    reply = openai_client.chat.completions.create(**ask, tool_choice="required")
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].id == "call_r1"
    again = kit.synthesizer.requests[1]["json"]
    assert again["tool_choice"] == "required"
    assert "must call one of your tools" in again["messages"][-1]["content"]

    kit.synthesizer.enqueue(Reply.stream(["Sunny."]), Reply.stream(["Sunny, I said."]))
    named = {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(**ask, tool_choice=named)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "tool_choice_unmet"
    assert "demanded a call of your tool get_weather" in caught.value.body["message"]
    assert len(kit.synthesizer.requests) == 4  # asked once more, not again and again
    run = Run.objects.filter(message__conversation__panel=kit.panel).latest("pk")
    assert (run.status, run.failure_reason) == ("failed", "tool_choice_unmet")


@pytest.fixture
def qwen_alone(alice):
    """The bundled Qwen 1.5B alone: a panel of one seat and no judge."""
    model = CatalogModel.objects.get(model_id="qwen2.5-coder-1.5b")
    panel = Panel.objects.create(owner=alice, slug="qwen-alone", name="Qwen alone")
    Seat.objects.create(panel=panel, model=model, max_tokens=80, temperature=0)
    return panel


@pytest.mark.models
def test_json_schema_with_the_real_local_model(openai_client, qwen_alone):
    reply = openai_client.chat.completions.create(
        model="fusion/qwen-alone",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        response_format=CITY,
    )
    answer = json.loads(reply.choices[0].message.content)
    assert set(answer) == {"country", "capital"} and "Paris" in answer["capital"]


@pytest.mark.models
def test_json_object_with_the_real_local_model(openai_client, qwen_alone):
    reply = openai_client.chat.completions.create(
        model="fusion/qwen-alone",
        messages=[{"role": "user", "content": 'Give {"sum": <2 + 3>} as JSON.'}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_a_model_that_writes_its_call_in_text_answers_with_tool_calls(openai_client, alice):
    """A model marked `tool_calls_in_text` (as the bundled Qwen models are) writes the
    caller's tool call as a fenced JSON block: the API returns it as `tool_calls`."""
    written = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    with ScriptedServer() as server:
        provider = Provider.objects.create(name="Up in text", base_url=server.base_url)
        model = CatalogModel.objects.create(
            provider=provider,
            model_id="in-text",
            display_name="In text",
            supports_tools=True,
            tool_calls_in_text=True,
        )
        Seat.objects.create(panel=Panel.objects.create(owner=alice, slug="in-text"), model=model)
        server.enqueue(Reply.stream(["Let me look.\n", written[:20], written[20:]]))
        server.enqueue(Reply.stream([written]))
        whole = openai_client.chat.completions.create(
            model="fusion/in-text", messages=[QUESTION], tools=[WEATHER]
        )
        text, calls, finish = _streamed(
            openai_client.chat.completions.create(
                model="fusion/in-text", messages=[QUESTION], tools=[WEATHER], stream=True
            )
        )
    (call,) = whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert whole.choices[0].message.content in ("Let me look.", None)
    assert finish == "tool_calls" and "get_weather" not in text
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]

"""Server tools through the official `openai` client, against the live stack: one
model (a scripted upstream) is given `openrouter:fusion` and decides whether to
convene the panel (scripted seats and judge); the server runs the tool loop, and
the model answers from the analysis. Caller's function tools mixed in go back to
the caller; bad parameters are refused with nothing run.

Long on purpose: one live stack serves every case, and its fixtures are the file's.
"""

import json

import openai
import pytest

from chat.models import Answer, Run
from panels.models import CatalogModel, Panel, Provider, Seat
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

QUESTION = [{"role": "user", "content": "What is the capital of Australia?"}]
PANEL = {"analysis_models": ["seat-0", "seat-1", "seat-2"], "model": "judge"}
FUSION = {"type": "openrouter:fusion", "parameters": PANEL}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FINAL = "Canberra is the capital, as the panel found."


@pytest.fixture
def kit(alice):
    """Three scripted seats and a judge (the panel), and `outer`, the scripted model
    that is given the server tools."""
    kit = ScriptedPanel(seats=3, user=alice)
    kit.seats[0].default = Reply.stream(["Canberra."])
    kit.seats[1].default = Reply.stream(["Sydney."])
    kit.seats[2].default = Reply.stream(["Canberra, since 1913."])
    kit.judge.default = analysis_reply()
    kit.outer = ScriptedServer().__enter__()
    provider = Provider.objects.create(name="Up outer", base_url=kit.outer.base_url)
    CatalogModel.objects.create(
        provider=provider,
        model_id="outer",
        display_name="Outer",
        context_length=8192,
        input_price="1",
        output_price="2",
        supports_tools=True,
    )
    yield kit
    kit.outer.__exit__(None, None, None)
    kit.close()


def _fusion_call(question: str = "") -> Reply:
    arguments = json.dumps({"question": question} if question else {})
    return Reply.tool_calls([(f"call_{len(question)}", "fusion", arguments)])


def _streamed(stream) -> tuple[str, dict | None]:
    text, usage = "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    return text, usage


def _tool_result(request: dict) -> dict:
    [tool] = [m for m in request["json"]["messages"] if m["role"] == "tool"]
    return json.loads(tool["content"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_model_convenes_the_panel_and_answers_from_the_analysis(openai_client, kit, stream):
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    reply = openai_client.chat.completions.create(
        model="outer",
        messages=QUESTION,
        tools=[FUSION],
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    if stream:
        text, usage = _streamed(reply)
    else:
        text, usage = reply.choices[0].message.content, reply.usage.model_dump()
    assert text == FINAL
    assert usage["server_tool_use"] == {
        "fusion_requests": 1,
        "web_search_requests": 0,
        "web_fetch_requests": 0,
    }

    # The model was offered the fusion tool, called it, and read the analysis.
    first, second = kit.outer.requests
    assert [t["function"]["name"] for t in first["json"]["tools"]] == ["fusion"]
    result = _tool_result(second)
    assert result["analysis"]["consensus"] == ["Canberra is the capital"]
    assert result["analysis"]["partial_coverage"] == [
        {"point": "parliament moved there in 1927", "models": result_models(result, "A", "C")}
    ]
    assert result["failure_reason"] is None
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1] and len(kit.judge.requests) == 1
    assert kit.synthesizer.requests == []  # the model writes the answer, not a synthesizer

    # Every call is an answer of the run; the cost is all of theirs.
    run = Run.objects.get(message__conversation__owner__username="alice")
    roles = [a.role for a in run.answers.order_by("position")]
    assert roles == ["seat", "seat", "seat", "seat", "judge"]
    assert run.final_answer.model_key == "outer" and run.final_answer.text == FINAL
    assert run.analysis["partial_coverage"]
    costs = [a.cost_usd for a in run.answers.all()]
    assert all(c is not None and c > 0 for c in costs)
    assert usage["cost"] == pytest.approx(float(sum(costs)))


def result_models(result: dict, *labels: str) -> list[str]:
    """The models the scripted judge's labels stood for, read from the result's
    unique insight (label A) and contradictions (A and B)."""
    [insight] = result["analysis"]["unique_insights"]
    by_label = {"A": insight["model"]}
    stances = result["analysis"]["contradictions"][0]["stances"]
    by_label["B"] = next(s["model"] for s in stances if s["model"] != by_label["A"])
    by_label["C"] = ({"seat-0", "seat-1", "seat-2"} - set(by_label.values())).pop()
    return [by_label[label] for label in labels]


def test_tool_choice_required_forces_the_first_call_only(openai_client, kit):
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    reply = openai_client.chat.completions.create(
        model="outer", messages=QUESTION, tools=[FUSION], tool_choice="required"
    )
    assert reply.choices[0].message.content == FINAL
    first, second = kit.outer.requests
    assert first["json"]["tool_choice"] == "required"
    assert second["json"].get("tool_choice") in (None, "auto")


def test_tool_choice_may_name_the_fusion_tool(openai_client, kit):
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    openai_client.chat.completions.create(
        model="outer",
        messages=QUESTION,
        tools=[FUSION],
        tool_choice={"type": "openrouter:fusion"},
    )
    first = kit.outer.requests[0]["json"]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "fusion"}}


def test_a_model_that_declines_answers_alone(openai_client, kit):
    kit.outer.enqueue(Reply.stream(["You're welcome!"]))
    reply = openai_client.chat.completions.create(
        model="outer", messages=[{"role": "user", "content": "thanks!"}], tools=[FUSION]
    )
    assert reply.choices[0].message.content == "You're welcome!"
    assert reply.usage.model_extra["server_tool_use"]["fusion_requests"] == 0
    assert sum(kit.calls().values()) == 0  # no panel was convened
    [card] = reply.model_extra["fusion"]["decisions"]  # the same card as the room's
    assert (card["stage"], card["summary"]) == (
        "consult",
        "Answered alone, without consulting the panel",
    )


def test_the_callers_tools_go_back_to_the_caller(openai_client, kit):
    """Mixed: the model convenes the panel, then calls the caller's tool; the call
    comes back as tool_calls, and the panel's run is in the same answer's run."""
    kit.outer.enqueue(
        _fusion_call(), Reply.tool_calls([("call_w", "get_weather", '{"city": "Canberra"}')])
    )
    reply = openai_client.chat.completions.create(
        model="outer", messages=QUESTION, tools=[FUSION, WEATHER]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("call_w", "get_weather")
    first, second = kit.outer.requests
    offered = [t["function"]["name"] for t in first["json"]["tools"]]
    assert offered == ["fusion", "get_weather"]
    assert _tool_result(second)["analysis"] is not None
    assert reply.usage.model_extra["server_tool_use"]["fusion_requests"] == 1


def test_a_model_calling_fusion_in_a_loop_is_bounded(openai_client, kit):
    kit.outer.enqueue(_fusion_call("first try"), _fusion_call("second try"), Reply.stream([FINAL]))
    bounded = {**FUSION, "parameters": {**PANEL, "max_tool_calls": 2}}
    reply = openai_client.chat.completions.create(model="outer", messages=QUESTION, tools=[bounded])
    assert reply.choices[0].message.content == FINAL
    assert reply.usage.model_extra["server_tool_use"]["fusion_requests"] == 2
    last = kit.outer.requests[2]["json"]
    assert "tools" not in last  # out of calls: no tool offered
    # The seats were asked the model's own question.
    assert "second try" in json.dumps(kit.seats[0].requests[1]["json"]["messages"])


def test_the_responses_api_takes_the_fusion_tool(openai_client, kit):
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    response = openai_client.responses.create(
        model="outer", input="What is the capital of Australia?", tools=[FUSION]
    )
    assert response.output_text == FINAL
    assert len(kit.judge.requests) == 1


def test_the_responses_api_streams_with_the_fusion_tool(openai_client, kit):
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    stream = openai_client.responses.create(
        model="outer", input="What is the capital of Australia?", tools=[FUSION], stream=True
    )
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == FINAL
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1]


@pytest.mark.parametrize(
    ("parameters", "param"),
    [
        ({"analysis_models": []}, "tools[0].parameters.analysis_models"),
        ({"analysis_models": ["seat-0"] * 9}, "tools[0].parameters.analysis_models"),
        ({"analysis_models": ["seat-0", "nope"]}, "tools[0].parameters.analysis_models[1]"),
        ({"analysis_models": ["seat-0"], "model": "nope"}, "tools[0].parameters.model"),
        ({"max_tool_calls": 17}, "tools[0].parameters.max_tool_calls"),
    ],
)
def test_bad_parameters_are_refused_with_nothing_run(openai_client, kit, parameters, param):
    runs, answers = Run.objects.count(), Answer.objects.count()
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model="outer",
            messages=QUESTION,
            tools=[{"type": "openrouter:fusion", "parameters": parameters}],
        )
    assert refused.value.body["param"] == param
    assert (Run.objects.count(), Answer.objects.count()) == (runs, answers)
    assert kit.outer.requests == [] and sum(kit.calls().values()) == 0


def test_a_model_without_tool_support_is_refused(openai_client, kit):
    CatalogModel.objects.filter(model_id="outer").update(supports_tools=False)
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model="outer", messages=QUESTION, tools=[WEATHER, FUSION]
        )
    assert refused.value.body["param"] in ("tools", "tools[1]")
    assert Run.objects.count() == 0 and kit.outer.requests == []


def test_the_panel_runs_one_level_deeper_and_a_loop_meets_the_depth_limit(
    openai_client, kit, settings
):
    """The model's calls carry the request's depth + 1, the panel's + 2: a seat that
    points back at a fusion endpoint arrives one level deeper, and at the limit the
    request is refused with 508 before anything runs."""
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    openai_client.chat.completions.create(
        model="outer", messages=QUESTION, tools=[FUSION], extra_headers={"X-Fusion-Depth": "1"}
    )
    assert kit.outer.requests[0]["headers"]["X-Fusion-Depth"] == "2"
    assert kit.seats[0].requests[0]["headers"]["X-Fusion-Depth"] == "3"
    with pytest.raises(openai.APIStatusError) as refused:
        openai_client.chat.completions.create(
            model="outer",
            messages=QUESTION,
            tools=[FUSION],
            extra_headers={"X-Fusion-Depth": str(settings.FUSION_MAX_DEPTH)},
        )
    assert refused.value.status_code == 508
    assert len(kit.outer.requests) == 2  # the refused request called nothing


# --- `openrouter/fusion` as OpenRouter means it: opted in by X-Fusion-Alias: tool ----

AS_TOOL = {"X-Fusion-Alias": "tool"}


@pytest.fixture
def default_panel(kit, settings):
    """The default panel (API_DEFAULT_PANEL) made of the kit's models: the three
    scripted seats, `outer` its judge (so the alias's model, by default), the kit's
    synthesizer. A bundled preset of that name, if the database has one, is replaced."""
    Panel.objects.filter(slug=settings.API_DEFAULT_PANEL).delete()
    outer = CatalogModel.objects.get(model_id="outer")
    panel = Panel.objects.create(
        slug=settings.API_DEFAULT_PANEL,
        name="Default",
        owner=kit.user,
        judge=outer,
        synthesizer=kit.panel.synthesizer,
    )
    for seat in kit.panel.seats.all():
        Seat.objects.create(panel=panel, position=seat.position, model=seat.model)
    return panel


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_alias_opted_in_is_one_model_with_the_fusion_tool(
    openai_client, kit, default_panel, stream
):
    """With X-Fusion-Alias: tool, `openrouter/fusion` is the default panel's judge
    (`outer`) with the fusion tool attached: it calls the tool, the default panel's
    seats answer, the calling model analyses them (the analyst defaults to the
    caller, as on OpenRouter) and then writes the answer; no synthesizer runs."""
    kit.outer.enqueue(_fusion_call(), analysis_reply(), Reply.stream([FINAL]))
    reply = openai_client.chat.completions.create(
        model="openrouter/fusion",
        messages=QUESTION,
        stream=stream,
        extra_headers=AS_TOOL,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    if stream:
        text, usage = _streamed(reply)
    else:
        text, usage = reply.choices[0].message.content, reply.usage.model_dump()
    assert text == FINAL
    assert usage["server_tool_use"]["fusion_requests"] == 1

    decided, analysed, answered = kit.outer.requests
    assert [t["function"]["name"] for t in decided["json"]["tools"]] == ["fusion"]
    assert "tools" not in analysed["json"]  # the analyst's call, not the model's turn
    assert _tool_result(answered)["analysis"]["consensus"] == ["Canberra is the capital"]
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1]
    assert kit.judge.requests == [] and kit.synthesizer.requests == []

    run = Run.objects.get(message__conversation__owner__username="alice")
    assert run.message.conversation.model.model_id == "outer"
    assert run.message.conversation.panel is None
    assert run.final_answer.model_key == "outer" and run.final_answer.text == FINAL


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_alias_opted_in_on_the_responses_api_takes_the_plugin_as_the_tools_parameters(
    openai_client, kit, default_panel, stream
):
    """The `fusion` plugin, given with the opted-in alias, configures the attached
    tool, as on OpenRouter: its two seats and its judge convene, not the default's."""
    kit.outer.enqueue(_fusion_call(), Reply.stream([FINAL]))
    plugin = {"id": "fusion", "analysis_models": ["seat-0", "seat-2"], "model": "judge"}
    response = openai_client.responses.create(
        model="openrouter/fusion",
        input="What is the capital of Australia?",
        stream=stream,
        extra_headers=AS_TOOL,
        extra_body={"plugins": [plugin]},
    )
    if stream:
        events = list(response)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        [done] = [e.response for e in events if e.type == "response.completed"]
    else:
        text, done = response.output_text, response
    assert text == FINAL
    assert done.usage.model_extra["server_tool_use"]["fusion_requests"] == 1
    assert [len(s.requests) for s in kit.seats] == [1, 0, 1]
    assert len(kit.judge.requests) == 1 and len(kit.outer.requests) == 2
    assert kit.synthesizer.requests == []


@pytest.mark.parametrize("header", [None, "panel"], ids=["no header", "panel"])
def test_the_alias_keeps_its_meaning_by_default(openai_client, kit, default_panel, header):
    """Without the opt-in (or with `panel`), `openrouter/fusion` is still the default
    panel: seats, judge (here `outer`, as a judge: offered no tools) and synthesis."""
    kit.outer.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra, synthesised."]))
    reply = openai_client.chat.completions.create(
        model="openrouter/fusion",
        messages=QUESTION,
        extra_headers={"X-Fusion-Alias": header} if header else {},
    )
    assert reply.choices[0].message.content == "Canberra, synthesised."
    assert "server_tool_use" not in reply.usage.model_extra
    [judged] = kit.outer.requests
    assert "tools" not in judged["json"]
    assert [len(s.requests) for s in kit.seats] == [1, 1, 1]
    assert len(kit.synthesizer.requests) == 1
    assert reply.model_extra["fusion"]["panel"]["slug"] == default_panel.slug


def test_the_opt_in_is_refused_when_its_values_are_bad_and_nothing_runs(
    openai_client, kit, default_panel, settings
):
    runs, answers = Run.objects.count(), Answer.objects.count()

    def refused(headers: dict, api: str = "chat", **body) -> dict:
        with pytest.raises(openai.BadRequestError) as caught:
            if api == "chat":
                openai_client.chat.completions.create(
                    model="openrouter/fusion", messages=QUESTION, extra_headers=headers, **body
                )
            else:
                openai_client.responses.create(
                    model="openrouter/fusion", input="hi", extra_headers=headers, **body
                )
        return caught.value.body

    bogus = refused({"X-Fusion-Alias": "hosted"})
    assert bogus["param"] == "X-Fusion-Alias" and "`tool`" in bogus["message"]
    assert refused({"X-Fusion-Alias": "model"}, api="responses")["param"] == "X-Fusion-Alias"
    empty = refused(AS_TOOL, extra_body={"plugins": [{"id": "fusion", "analysis_models": []}]})
    assert empty["param"] == "plugins[0].analysis_models"
    unknown = refused(AS_TOOL, extra_body={"plugins": [{"id": "fusion", "model": "nope"}]})
    assert unknown["param"] == "plugins[0].model"
    twice = refused(
        AS_TOOL,
        tools=[FUSION],
        extra_body={"plugins": [{"id": "fusion", "analysis_models": ["seat-0"]}]},
    )
    assert twice["param"] == "plugins[0]" and "twice" in twice["message"]
    recipe = {
        "schema": 2,
        "name": "x",
        "seats": [{"model": {"provider": "Up seat-0", "model": "seat-0"}}],
        "judge": {"provider": "Up judge", "model": "judge"},
        "synthesizer": {"provider": "Up synth", "model": "synth"},
    }
    assert refused(AS_TOOL, extra_body={"fusion": {"panel": recipe}})["param"] == "fusion.panel"

    # The alias's model must be able to call tools.
    CatalogModel.objects.filter(model_id="outer").update(supports_tools=False)
    no_tools = refused(AS_TOOL, api="responses")
    assert no_tools["param"] == "model" and "cannot call tools" in no_tools["message"]
    # Without a default panel to lend its judge (and no API_FUSION_ALIAS_MODEL).
    default_panel.delete()
    no_panel = refused(AS_TOOL)
    assert no_panel["param"] == "model" and settings.API_DEFAULT_PANEL in no_panel["message"]

    assert (Run.objects.count(), Answer.objects.count()) == (runs, answers)
    assert kit.outer.requests == [] and sum(kit.calls().values()) == 0

"""POST /v1/responses through the official `openai` client's `responses.create`,
against the live stack (Daphne, a Celery worker, Redis): scripted upstream panels
for exact answers, and one call through the real local panel."""

import json
import time

import httpx
import openai
import pytest
from openai.types.responses import ResponseTextDeltaEvent

from chat.models import Run
from tests.conftest import wait_until
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

USAGE = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
ANSWER = ["Canberra ", "is the ", "capital."]


@pytest.fixture
def kit(alice):
    """A panel of two scripted seats, a judge and a synthesizer that answers ANSWER."""
    kit = ScriptedPanel(seats=2, user=alice)
    for server in kit.seats:
        server.default = Reply.stream(["Canberra."], usage=USAGE)
    kit.judge.default = analysis_reply()
    kit.synthesizer.default = Reply.stream(ANSWER, usage=USAGE, delay=0.05)
    yield kit
    kit.close()


def test_a_response_from_a_scripted_panel(openai_client, kit):
    response = openai_client.responses.create(
        model="fusion/scripted",
        instructions="Answer in one sentence.",
        input=[
            {"role": "user", "content": "Hello."},
            {"type": "message", "role": "assistant", "content": "Hello! Ask away."},
            {"role": "user", "content": [{"type": "input_text", "text": "Capital of Australia?"}]},
        ],
        max_output_tokens=64,
        temperature=0.3,
        metadata={"ticket": "42"},
    )
    assert response.output_text == "Canberra is the capital."
    assert response.status == "completed" and response.error is None
    assert response.id.startswith("resp_") and response.model == "fusion/scripted"
    assert response.instructions == "Answer in one sentence."
    assert response.metadata == {"ticket": "42"} and response.max_output_tokens == 64
    message = response.output[0]
    assert (message.type, message.role, message.status) == ("message", "assistant", "completed")
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    # Every call of the run counted: two seats, the judge (no usage sent) and the synthesizer.
    assert response.usage.input_tokens >= 30 and response.usage.output_tokens >= 12
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    fusion = response.model_extra["fusion"]
    assert [s["status"] for s in fusion["seats"]] == ["done", "done"]
    run = Run.objects.get(pk=fusion["run"])
    assert run.synthesis.text == response.output_text
    assert run.message.conversation.owner.username == "alice"
    # What the panel saw: the instructions as a system message, the earlier turns, the
    # question; the synthesizer got the caller's limits.
    seat_messages = kit.seats[0].requests[-1]["json"]["messages"]
    assert any("Answer in one sentence." in m["content"] for m in seat_messages)
    assert [m["content"] for m in seat_messages if m["role"] != "system"] == [
        "Hello.",
        "Hello! Ask away.",
        "Capital of Australia?",
    ]
    synthesis = kit.synthesizer.requests[-1]["json"]
    assert synthesis["max_tokens"] == 64 and synthesis["temperature"] == 0.3


def test_a_streamed_response_sends_openais_events_in_order(openai_client, kit):
    events = list(
        openai_client.responses.create(model="fusion/scripted", input="Capital?", stream=True)
    )
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len(deltas) >= 2 and all(isinstance(d, ResponseTextDeltaEvent) for d in deltas)
    text = "".join(d.delta for d in deltas)
    assert text == "Canberra is the capital."
    item_id = events[2].item.id
    assert {d.item_id for d in deltas} == {item_id} and events[-2].item.id == item_id
    assert events[-4].text == text and events[-3].part.text == text
    created, completed = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.id == completed.id
    assert completed.status == "completed" and completed.output_text == text
    assert completed.usage.total_tokens > 0
    run = Run.objects.get(pk=completed.model_extra["fusion"]["run"])
    assert run.synthesis.text == text


def test_the_sdks_stream_helper_assembles_the_same_response(openai_client, kit):
    """`responses.stream()` checks ids and item identities as it accumulates."""
    with openai_client.responses.stream(model="fusion/scripted", input="Capital?") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "Canberra is the capital."


def test_progress_events_when_asked(openai_client, kit):
    events = list(
        openai_client.responses.create(
            model="fusion/scripted",
            input="Capital?",
            stream=True,
            extra_body={"fusion": {"progress": True}},
        )
    )
    progress = [e.model_extra["event"]["type"] for e in events if e.type == "fusion.progress"]
    assert {"answer.created", "answer.done", "run.done"} <= set(progress), progress
    assert events[-1].type == "response.completed"


def test_an_answer_cut_at_max_output_tokens_is_incomplete(openai_client, kit):
    kit.synthesizer.default = Reply.stream(["Canberra is"], usage=USAGE, finish="length")
    response = openai_client.responses.create(
        model="fusion/scripted", input="Capital?", max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.output_text == "Canberra is"
    events = list(
        openai_client.responses.create(model="fusion/scripted", input="Capital?", stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_a_failed_run_is_an_error_and_a_failed_event(openai_client, kit):
    refusal = json.dumps({"error": {"message": "no such model", "type": "invalid_request_error"}})
    for server in kit.seats:
        server.default = Reply(
            status=400, headers={"Content-Type": "application/json"}, body=refusal.encode()
        )
    with pytest.raises(openai.APIStatusError) as failed:
        openai_client.responses.create(model="fusion/scripted", input="Capital?")
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "all_seats_failed"
    assert failed.value.response.json()["fusion"]["failed_models"] == ["Seat-0", "Seat-1"]
    events = list(
        openai_client.responses.create(model="fusion/scripted", input="Capital?", stream=True)
    )
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    ended = events[-1].response
    assert ended.status == "failed" and ended.output == []
    assert ended.error.code == "server_error" and ended.error.message
    assert ended.model_extra["fusion"]["failure_reason"] == "all_seats_failed"


BAD = [
    ({"tools": [{"type": "function", "name": "lookup", "parameters": {}}]}, "tools"),
    ({"previous_response_id": "resp_fusion_1"}, "previous_response_id"),
    ({"background": True}, "background"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    (
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}],
                }
            ]
        },
        "input[0].content[0]",
    ),
    (
        {"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]},
        "input[0].type",
    ),
]


def test_unsupported_input_is_refused_naming_the_field_and_starts_nothing(openai_client, kit):
    for fields, param in BAD:
        body = {"model": "fusion/scripted", "input": "Capital?", **fields}
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.responses.create(**body)
        assert refused.value.status_code == 400
        assert refused.value.body["param"] == param, refused.value.body
        assert refused.value.body["type"] == "invalid_request_error"
    assert not Run.objects.exists()
    assert kit.calls() == {"seat-0": 0, "seat-1": 0, "judge": 0, "synth": 0}


def test_a_vanished_stream_client_cancels_its_run(live_stack, api_key, kit):
    for server in kit.seats:
        server.default = Reply.stream(["slow "], done=False, finish=None, hang=True)
    body = {"model": "fusion/scripted", "stream": True, "input": "hi"}
    url, headers = f"{live_stack.url}/v1/responses", {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("POST", url, timeout=30, headers=headers, json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: response.created"
        assert "event: response.in_progress" in [next(lines) for _ in range(4)]
        wait_until(lambda: all(s.requests for s in kit.seats), 5, "every seat's request")
    hung_up = time.monotonic()  # leaving the block closed the connection
    run = Run.objects.get()
    wait_until(lambda: not Run.objects.get(pk=run.pk).is_active, 15, "the run to end")
    took = time.monotonic() - hung_up
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    # It once took Daphne's 10 s: redis-py had absorbed the request's cancellation
    # (live.read_events; tests/test_follow_stream.py has the race itself).
    assert took < 3.0, f"the run ended {took:.2f} s after the hang-up"
    for server in kit.seats:
        assert server.disconnects[0] - hung_up < 2.0


def test_a_stream_client_gone_after_its_first_event_cancels_the_run_quickly(
    live_stack, api_key, kit
):
    """Hanging up right after `response.created` (the run perhaps still queued, or
    starting) stops it as fast as a later hang-up does (docs/RELIABILITY.md)."""
    for server in kit.seats:
        server.default = Reply.stream(["slow "], done=False, finish=None, hang=True)
    body = {"model": "fusion/scripted", "stream": True, "input": "hi"}
    url, headers = f"{live_stack.url}/v1/responses", {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("POST", url, timeout=30, headers=headers, json=body) as response:
        assert next(response.iter_lines()) == "event: response.created"
    hung_up = time.monotonic()  # leaving the block closed the connection
    run = Run.objects.get()
    wait_until(lambda: not Run.objects.get(pk=run.pk).is_active, 10, "the run to end")
    took = time.monotonic() - hung_up  # 0.05 to 0.31 s measured (docs/RELIABILITY.md)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert took < 3.0, f"the run ended {took:.2f} s after the hang-up"


@pytest.mark.models
def test_a_response_through_the_local_panel(openai_client):
    response = openai_client.responses.create(model="fusion/local", input="Is 7 a prime number?")
    assert response.status in ("completed", "incomplete") and response.output_text.strip()
    fusion = response.model_extra["fusion"]
    # Local verifies: the 1.5B's answer and its samples (and a program, when the
    # question is a computation), every one a seat answer of the run.
    assert len(fusion["seats"]) >= 3 and {s["status"] for s in fusion["seats"]} == {"done"}
    assert Run.objects.get(pk=fusion["run"]).synthesis.text == response.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_text_format_holds_the_answer_to_json(openai_client, kit, stream):
    """`text.format` is the Responses API's response_format: the synthesizer is asked
    for JSON, and what reaches the caller is checked JSON, never a fenced block."""
    kit.synthesizer.enqueue(
        Reply.stream(['```json\n{"country": "France", ', '"capital": "Paris"}\n```'])
    )
    schema = {
        "type": "object",
        "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
        "required": ["country", "capital"],
    }
    city = {"type": "json_schema", "name": "city", "schema": schema, "strict": True}
    asked = {"model": "fusion/scripted", "input": "Capital of France?", "text": {"format": city}}
    if stream:
        events = list(openai_client.responses.create(**asked, stream=True))
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert len(deltas) == 1  # the checked JSON, in one piece
        text = events[-1].response.output_text
        assert deltas[0] == text
    else:
        text = openai_client.responses.create(**asked).output_text
    assert json.loads(text) == {"country": "France", "capital": "Paris"}
    sent = kit.synthesizer.requests[0]["json"]
    assert sent["response_format"]["json_schema"]["schema"] == schema

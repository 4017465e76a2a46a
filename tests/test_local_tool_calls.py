"""A seat whose model writes its tool calls in its text (the bundled Qwen models): the
calls are read from the text, carried out, shown in the seat's column, and never
streamed as text. First on a scripted upstream, then on the real Qwen2.5-Coder 1.5B."""

import asyncio
import json
import sys

import pytest

from chat.engine.tool_loop import REPEATED_CALLS
from chat.engine.tools.sandbox import unavailable_reason
from chat.models import Run
from panels import local_models
from panels.models import CatalogModel, Seat
from tests.conftest import _model_answers, child_env, start, stop, wait_for
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = [
    pytest.mark.models,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("redis_ready"),
    pytest.mark.skipif(bool(unavailable_reason()), reason="bubblewrap is not installed"),
]

PRODUCT = "121932631112635269"  # 123456789 × 987654321
QUESTION = "What is 123456789 × 987654321? Compute it exactly."
# What the 1.5B writes when offered run_python, verbatim.
FENCED = (
    '```json\n{\n  "name": "run_python",\n  "arguments": {\n'
    '    "code": "print(123456789 * 987654321)"\n  }\n}\n```'
)


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


def _seat_events(events: list[dict], answer_id: int) -> tuple[str, list[dict]]:
    """The text streamed into a seat's column, and its tool events."""
    text = "".join(
        e["text"] for e in events if e["type"] == "answer.delta" and e["answer"] == answer_id
    )
    tools = [e for e in events if e["type"].startswith("tool.") and e["answer"] == answer_id]
    return text, tools


def _streamed_before_the_first_tool(events: list[dict], answer_id: int) -> str:
    text = []
    for event in events:
        if event.get("answer") != answer_id:
            continue
        if event["type"] == "tool.started":
            break
        if event["type"] == "answer.delta":
            text.append(event["text"])
    return "".join(text)


def test_a_call_written_in_text_is_run_and_a_repeated_one_is_not():
    kit = ScriptedPanel(seats=1, tools=["run_python"])
    try:
        CatalogModel.objects.filter(model_id="seat-0").update(tool_calls_in_text=True)
        seat = kit.seats[0]
        seat.enqueue(
            Reply.stream(["I will compute it.\n", FENCED[:25], FENCED[25:60], FENCED[60:]]),
            Reply.stream([FENCED]),  # the same call again, after reading its result
            Reply.stream([f"The product is {PRODUCT}."]),
        )
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 9, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream([PRODUCT]))
        run_id = kit.ask(QUESTION)
        events = asyncio.run(run_and_listen(kit, run_id))
        answer = Run.objects.get(pk=run_id).seat_answers[0]
        assert answer.text == f"I will compute it.\n\nThe product is {PRODUCT}."
        (step,) = answer.tool_steps  # run once, not twice
        assert step["name"] == "run_python" and PRODUCT in step["output"]
        streamed, tools = _seat_events(events, answer.pk)
        assert [e["type"] for e in tools] == ["tool.started", "tool.done"]
        assert "run_python" not in streamed and "```" not in streamed  # never shown as text
        second = seat.requests[1]["json"]["messages"]
        assert second[-2]["tool_calls"][0]["function"]["name"] == "run_python"
        assert second[-1]["role"] == "tool" and PRODUCT in second[-1]["content"]
        third = seat.requests[2]["json"]
        assert "tools" not in third  # asked to answer with what it has
        assert third["messages"][-1] == {"role": "user", "content": REPEATED_CALLS}
    finally:
        kit.close()


def test_without_the_catalog_flag_the_text_is_the_answer():
    kit = ScriptedPanel(seats=1, tools=["run_python"])
    try:
        kit.seats[0].enqueue(Reply.stream([FENCED]))
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 5, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream(["?"]))
        run_id = kit.ask(QUESTION)
        asyncio.run(run_and_listen(kit, run_id))
        answer = Run.objects.get(pk=run_id).seat_answers[0]
        assert answer.text == FENCED and answer.tool_steps == []
    finally:
        kit.close()


@pytest.fixture(scope="module")
def qwen_1_5b_server():
    """The bundled Qwen2.5-Coder 1.5B alone on its test port (started unless up): the
    session's `model_servers` would start all three models for one question."""
    model = local_models.QWEN_1_5B
    processes = []
    try:
        up = _model_answers(model)
    except Exception:
        up = False
    if not up:
        name = f"model-{model.key}"
        command = [sys.executable, "manage.py", "serve_model", model.key]
        processes.append((name, start(name, command, child_env())))
        wait_for(lambda: _model_answers(model), f"{model.key} to serve", 180, processes)
    yield model
    stop(processes)


@pytest.mark.stack
def test_the_bundled_qwen_1_5b_computes_a_product_with_run_python(qwen_1_5b_server):
    """The real model writes its call as text; it is read, run in the sandbox, shown in
    the seat's column, and the answer carries the computed product."""
    from panels.catalog import sync_site_providers

    sync_site_providers()
    qwen = CatalogModel.objects.get(model_id=qwen_1_5b_server.key)
    assert qwen.supports_tools and qwen.tool_calls_in_text
    kit = ScriptedPanel(seats=1, tools=["run_python"])
    try:
        Seat.objects.filter(panel=kit.panel).update(model=qwen, max_tokens=160, temperature=0)
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 9, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream([PRODUCT]))
        run_id = kit.ask(QUESTION)
        events = asyncio.run(run_and_listen(kit, run_id, timeout=240))
        answer = Run.objects.get(pk=run_id).seat_answers[0]
        assert answer.status == "done", answer.error
        assert answer.tool_steps, f"no tool call was read from: {answer.text!r}"
        step = answer.tool_steps[0]
        assert step["name"] == "run_python" and PRODUCT in step["output"], step
        assert "123456789" in json.loads(step["arguments"])["code"]
        _, tools = _seat_events(events, answer.pk)
        assert [e["type"] for e in tools][:2] == ["tool.started", "tool.done"]
        # The call never streamed into the column. (After reading its result, the model
        # may quote the call back in its answer, with the output beside it: that is its
        # answer's text, no call: it names a key no call has.)
        before_the_call = _streamed_before_the_first_tool(events, answer.pk)
        assert '"name"' not in before_the_call and "<tool_call>" not in before_the_call
        assert PRODUCT in answer.text.replace(",", ""), answer.text
    finally:
        kit.close()

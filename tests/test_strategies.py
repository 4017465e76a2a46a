"""Every decision path of the strategies, on scripted upstreams, counting the calls
each upstream received: a strategy that says it saved calls must not have made them."""

import asyncio
import json
import random

import pytest

from chat.engine import prompts
from chat.models import Answer, Run
from evals import calibration
from panels import strategy_settings
from panels.strategy_settings import SettingsError, clean_settings
from tests.pipeline_kit import GOOD_ANALYSIS, ScriptedPanel, analysis_reply, run_and_listen
from tests.scripted_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def make_kit():
    kits = []

    def make(strategy, settings=None, seats=3, seat_options=(), router=False):
        kit = ScriptedPanel(
            seats=seats,
            seat_options=seat_options,
            router=router,
            strategy=strategy,
            strategy_settings=settings or {},
        )
        kits.append(kit)
        return kit

    yield make
    for kit in kits:
        kit.close()


def _answer(kit, *texts):
    for server, text in zip(kit.seats, texts, strict=False):
        server.enqueue(Reply.stream([text]))


def _run(kit, question="What is the capital of Australia?") -> Run:
    run_id = kit.ask(question)
    events = asyncio.run(run_and_listen(kit, run_id))
    run = Run.objects.get(pk=run_id)
    run.events = events
    return run


def _json(data) -> Reply:
    return Reply.stream([json.dumps(data)])


def _decisions(run: Run) -> list[str]:
    return [d["summary"] for d in run.decisions]


# --- route ---------------------------------------------------------------------------

TAGS = [{"tags": ["code"]}, {"tags": ["factual"]}, {"tags": ["factual"]}]


def test_route_sends_the_question_to_the_tagged_seats_only(make_kit):
    kit = make_kit("route", seat_options=TAGS, router=True)
    kit.router.enqueue(_json({"category": "factual", "confidence": 0.9}))
    _answer(kit, "unused", "Canberra.", "Canberra, since 1913.")
    kit.judge.enqueue(analysis_reply({**GOOD_ANALYSIS, "scores": GOOD_ANALYSIS["scores"][:2]}))
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run = _run(kit)
    assert run.status == Run.Status.DONE
    assert kit.calls() == {
        "seat-0": 0,
        "seat-1": 1,
        "seat-2": 1,
        "judge": 1,
        "synth": 1,
        "router": 1,
    }
    assert _decisions(run) == ["Routed to factual experts (confidence 0.90)"]
    assert run.decisions[0]["detail"]["calls_saved"] == 1
    assert run.seat_answers[0].status == Answer.Status.SKIPPED
    assert run.router_answers[0].status == Answer.Status.DONE
    assert any(e["type"] == "decision" for e in run.events)  # shown as it happens


@pytest.mark.parametrize(
    "reply, why",
    [
        (_json({"category": "factual", "confidence": 0.2}), "The router was unsure (0.20)"),
        (Reply.stream(["I think this is about geography."]), "The router gave no usable reply"),
        (_json({"category": "astrology", "confidence": 0.99}), "not a category"),
        (Reply.json(500, {"error": "router down"}), "The router gave no usable reply"),
    ],
    ids=["low-confidence", "garbage", "unknown-category", "router-fails"],
)
def test_a_misroute_sends_the_question_to_the_whole_panel(make_kit, reply, why):
    kit = make_kit("route", seat_options=TAGS, router=True)
    kit.router.enqueue(reply)
    _answer(kit, "Canberra.", "Sydney.", "Canberra.")
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run = _run(kit)
    assert run.status == Run.Status.DONE
    assert kit.calls() == {
        "seat-0": 1,
        "seat-1": 1,
        "seat-2": 1,
        "judge": 1,
        "synth": 1,
        "router": 1,
    }
    (summary,) = _decisions(run)
    assert why in summary and summary.endswith("the whole panel answers")


def test_route_splits_a_question_into_parts_for_different_seats(make_kit):
    tags = [{"tags": ["reasoning"]}, {"tags": ["creative"]}, {"tags": []}]
    kit = make_kit("route", {"max_subquestions": 2}, seat_options=tags, router=True)
    parts = [
        {"question": "What is 6 times 7?", "category": "reasoning"},
        {"question": "Write a haiku about rain.", "category": "creative"},
    ]
    kit.router.enqueue(_json({"category": "reasoning", "confidence": 0.8, "subquestions": parts}))
    _answer(kit, "42", "Rain taps the window")
    kit.judge.enqueue(analysis_reply({**GOOD_ANALYSIS, "scores": GOOD_ANALYSIS["scores"][:2]}))
    kit.synthesizer.enqueue(Reply.stream(["6 × 7 = 42. And: Rain taps the window…"]))
    run = _run(kit, "What is 6 times 7, and write a haiku about rain.")
    assert run.status == Run.Status.DONE
    assert kit.calls() == {
        "seat-0": 1,
        "seat-1": 1,
        "seat-2": 0,
        "judge": 1,
        "synth": 1,
        "router": 1,
    }
    asked = [s.requests[0]["json"]["messages"][-1]["content"] for s in kit.seats[:2]]
    assert asked == ["What is 6 times 7?", "Write a haiku about rain."]
    assert run.decisions[0]["summary"].startswith("Split into 2 parts")
    synth_prompt = kit.synthesizer.requests[0]["json"]["messages"][-1]["content"]
    assert (
        "1. What is 6 times 7?" in synth_prompt and "2. Write a haiku about rain." in synth_prompt
    )
    assert [a.subquestion for a in run.seat_answers][:2] == [p["question"] for p in parts]


# --- vote ----------------------------------------------------------------------------


def test_weighted_majority_wins_without_any_judge_call(make_kit):
    weights = [{"weight": 3.0}, {"weight": 1.0}, {"weight": 1.0}]
    kit = make_kit("vote", seat_options=weights)
    _answer(kit, "The answer is 42.", "41", "41")
    run = _run(kit, "What is 6 times 7?")
    assert run.status == Run.Status.DONE
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "seat-2": 1, "judge": 0, "synth": 0}
    assert _decisions(run) == ["Vote 3–2 for 42, confidence 0.60"]
    assert run.final_answer.text == "The answer is 42."  # the member as written, not a rewrite


def test_a_tie_is_broken_by_the_judge(make_kit):
    kit = make_kit("vote", seats=2)
    _answer(kit, "Lyon.", "Paris.")
    kit.judge.enqueue(_json({"winner": "Paris"}))
    run = _run(kit, "What is the capital of France?")
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 1, "synth": 0}
    assert _decisions(run) == ["Vote 1–1 for Paris (tie broken by the judge), confidence 0.50"]
    assert run.final_answer.text == "Paris."


@pytest.mark.parametrize(
    ("measured", "winner"),
    [([(6, 8), (6, 8)], "Lyon."), ([(5, 8), (7, 8)], "Paris."), ([(8, 8), (1, 8)], "Lyon.")],
    ids=["equal accuracy: the first seat", "the second seat better", "the first seat better"],
)
def test_calibrated_weights_never_tie_two_seats(make_kit, measured, winner):
    # Weights as a calibration sets them (evals/calibration.py): two seats that disagree
    # never tie, and the better seat (the first on equal accuracy) wins with no judge.
    measures = [
        calibration.SeatMeasure(None, i + 1, r, n, "all items") for i, (r, n) in enumerate(measured)
    ]
    weights = calibration.ordered_weights(measures)
    kit = make_kit("vote", seats=2, seat_options=[{"weight": w} for w in weights])
    _answer(kit, "Lyon.", "Paris.")
    run = _run(kit, "What is the capital of France?")
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "judge": 0, "synth": 0}
    assert run.final_answer.text == winner
    assert "tie" not in _decisions(run)[0]


def test_an_answer_with_no_final_answer_abstains(make_kit):
    kit = make_kit("vote")
    rambling = "It depends on many things " * 12
    _answer(kit, "42", rambling, "Forty-two.")
    kit.judge.enqueue(_json({"answers": {"A": None}}))  # the extraction call finds none
    run = _run(kit, "What is 6 times 7?")
    assert kit.calls()["judge"] == 1
    detail = run.decisions[0]["detail"]
    assert detail["abstained"] == ["Seat-1"] and detail["winner"] == "42"
    assert _decisions(run) == ["Vote 2 for 42, confidence 1.00"]


def test_every_voter_failing_fails_the_run_in_words(make_kit):
    kit = make_kit("vote")
    for server in kit.seats:
        server.default = Reply.json(500, {"error": "down"})
    run = _run(kit)
    assert run.status == Run.Status.FAILED and run.failure_reason == "all_seats_failed"


# --- gate ----------------------------------------------------------------------------


def test_a_confident_first_seat_makes_exactly_one_upstream_call(make_kit):
    kit = make_kit("gate", {"threshold": 0.8})
    _answer(kit, "Canberra.\nConfidence: 95%")
    run = _run(kit)
    assert run.status == Run.Status.DONE
    assert sum(kit.calls().values()) == 1
    assert _decisions(run) == ["Confident (0.95): the panel was not needed"]
    assert run.final_answer.text == "Canberra."  # the confidence line is not part of it
    assert run.decisions[0]["detail"]["calls_saved"] == 2
    assert [a.status for a in run.seat_answers][1:] == [Answer.Status.SKIPPED] * 2


def test_an_unsure_first_seat_brings_in_the_panel(make_kit):
    kit = make_kit("gate", {"threshold": 0.8})
    _answer(kit, "Sydney?\nConfidence: 30%", "Canberra.", "Canberra.")
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run = _run(kit)
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "seat-2": 1, "judge": 1, "synth": 1}
    assert _decisions(run) == ["Unsure (0.30, below 0.8): the rest of the panel answers"]
    assert run.synthesis.text == "Canberra."


# --- escalate ------------------------------------------------------------------------

TIERS = [{"tier": 1}, {"tier": 1}, {"tier": 2}]


def test_escalate_asks_tier_2_only_on_a_contradiction(make_kit):
    kit = make_kit("escalate", seat_options=TIERS)
    _answer(kit, "Canberra.", "Sydney.", "Canberra, since 1913.")
    kit.judge.enqueue(analysis_reply(), analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run = _run(kit)
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "seat-2": 1, "judge": 2, "synth": 1}
    assert _decisions(run) == ["Contradiction on which city → asked tier 2"]
    assert run.decisions[0]["detail"]["ended_at_tier"] == 2


def test_escalate_stops_at_tier_1_when_it_agrees(make_kit):
    kit = make_kit("escalate", seat_options=TIERS)
    _answer(kit, "Canberra.", "Canberra.")
    agreed = {**GOOD_ANALYSIS, "contradictions": [], "scores": GOOD_ANALYSIS["scores"][:2]}
    kit.judge.enqueue(analysis_reply(agreed))
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    run = _run(kit)
    assert kit.calls() == {"seat-0": 1, "seat-1": 1, "seat-2": 0, "judge": 1, "synth": 1}
    assert _decisions(run) == ["Tier 1 agreed: no contradiction: tier 2 was not needed"]
    assert run.decisions[0]["detail"]["ended_at_tier"] == 1


# --- settings that cannot be used are refused when saved --------------------------------


def test_bad_settings_are_refused_naming_the_field():
    with pytest.raises(SettingsError, match="threshold: is 1.5; it must be from 0 to 1"):
        clean_settings("gate", {"threshold": 1.5})
    with pytest.raises(SettingsError, match="tier 2 to ask"):
        clean_settings("escalate", {}, [{"tier": 1}, {"tier": 1}])
    with pytest.raises(SettingsError, match="at least one seat tagged"):
        clean_settings("route", {}, [{"tags": []}])
    with pytest.raises(SettingsError, match=r"seats\[1\].tags: 'poetry' is not one"):
        clean_settings("route", {}, [{"tags": ["poetry"]}])
    with pytest.raises(SettingsError, match="is not a setting of the vote strategy"):
        clean_settings("vote", {"threshold": 0.5})
    assert clean_settings("fusion", None) == {}
    assert clean_settings("route", {})["categories"] == strategy_settings.CATEGORIES


def test_the_api_and_mcp_results_carry_the_strategy_and_its_decisions(make_kit):
    import jsonschema

    from chat.api import run_result
    from chat.api.mcp_server import result_of
    from chat.api.openapi import FUSION_RESULT, SPEC
    from chat.management.commands.fusion import run_json

    kit = make_kit("vote", seats=2)
    _answer(kit, "42", "42")
    run = Run.objects.prefetch_related("answers").get(pk=_run(kit, "6 × 7?").pk)
    fusion = run_result.fusion(run)
    assert fusion["strategy"] == "vote"
    assert fusion["decisions"][0]["summary"] == "Vote 2 for 42, confidence 1.00"
    assert fusion["decisions"][0]["detail"]["winner"] == "42"
    assert result_of(run)["decisions"] == ["Vote 2 for 42, confidence 1.00"]
    assert run_json(run)["decisions"][0]["summary"] == "Vote 2 for 42, confidence 1.00"
    # The document's schema, derived from the types, holds for a real run's extension.
    jsonschema.validate(json.loads(json.dumps(fusion)), FUSION_RESULT)
    documented = SPEC["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    schema = documented["content"]["application/json"]["schema"]["properties"]["fusion"]
    assert {"strategy", "decisions"} <= set(schema["properties"])


def test_votes_weighed_by_the_judges_scores(make_kit):
    """Two seats say 41 and one says 42; the judge scores the 42 at 10 and the 41s at
    2: weighed by score, 42 wins (1.0 against 0.4)."""
    kit = make_kit("vote", {"use_judge_scores": True})
    _answer(kit, "42", "41", "41")
    run_id = kit.ask("What is 6 times 7?")
    seats = Run.objects.get(pk=run_id).seat_answers
    labelled = prompts.anonymise([(a.pk, "") for a in seats], random.Random(run_id))
    label = {answer_id: lab for lab, answer_id, _ in labelled}
    scores = [
        {"label": label[a.pk], "score": 10 if i == 0 else 2, "reason": "."}
        for i, a in enumerate(seats)
    ]
    kit.judge.enqueue(analysis_reply({"scores": scores}))
    asyncio.run(run_and_listen(kit, run_id))
    run = Run.objects.get(pk=run_id)
    assert kit.calls()["judge"] == 1 and kit.calls()["synth"] == 0
    assert _decisions(run) == ["Vote 1–0.4 for 42, confidence 0.71"]
    assert run.final_answer.text == "42"

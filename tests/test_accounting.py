"""Accounting covers everything a run sends and everything the site pays for: the
whole conversation, tools and schemas priced before a run is admitted; the estimates
of runs answering at once reserved against the budget; a paid web search charged to
the site's ledger even when the seat's model is the user's own. Scripted upstreams
and a scripted Brave-shaped search server on loopback."""

import json
import threading
from decimal import Decimal

import pytest

from chat.api.keys import create_key
from chat.engine import admission, loop, pipeline, runs
from chat.engine.admission import LimitReached
from chat.engine.runs import mark_failed, start_run, stop_run
from chat.engine.tools import search
from chat.models import Message, Run
from limits.models import Spend
from panels.models import CatalogModel, Provider
from panels.providers import netguard
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]


@pytest.fixture
def kit():
    kit = ScriptedPanel(seats=2)
    yield kit
    kit.close()


@pytest.fixture
def not_queued(monkeypatch):
    """Admission is the subject: the runs these tests start are not queued (a worker
    of the session's live stack would take them); the tests run them themselves."""
    monkeypatch.setattr(runs, "enqueue", lambda run_id: None)


@pytest.fixture
def failed_if_queued(monkeypatch):
    """For the API's refusals: a run admitted by mistake ends at once (failed), so
    the request answers, and the test fails, instead of waiting for a worker."""
    monkeypatch.setattr(
        runs, "enqueue", lambda run_id: mark_failed(run_id, Run.Failure.INTERNAL, "not queued")
    )


def _models(kit: ScriptedPanel):
    servers = [*kit.seats, kit.judge, kit.synthesizer]
    return CatalogModel.objects.filter(provider__base_url__in=[s.base_url for s in servers])


def _api(client, key: str, body: dict):
    return client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


# --- the whole conversation, tools and schemas -------------------------------------


def test_a_1mb_history_is_priced_and_refused_when_over_budget(
    client, kit, settings, failed_if_queued
):
    """Before, only the last message was priced: a 1 MB history reached every seat
    unpriced. Now each seat's input is measured as it will be sent (the history fits
    these seats' windows whole) and the run is refused with the budget's numbers."""
    settings.RUN_BUDGET_USD, settings.DAILY_BUDGET_USD = None, Decimal("1")
    settings.API_MAX_BODY_BYTES = 1_500_000
    _models(kit).update(input_price="10", output_price="0", context_length=1_000_000)
    _, key = create_key(kit.user, "history")
    history = []
    for i in range(10):  # ten earlier turns of 100,000 characters: 1 MB in all
        history += [
            {"role": "user", "content": f"Part {i}: " + "lorem ipsum " * 4_000},
            {"role": "assistant", "content": f"Noted part {i}. " + "dolor sit " * 5_000},
        ]
    messages = [*history, {"role": "user", "content": "Summarise all of it."}]
    assert sum(len(m["content"]) for m in messages) > 950_000
    response = _api(client, key, {"model": "fusion/scripted", "messages": messages})
    assert response.status_code == 402, response.content[:500]
    error = response.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
    limit = error["limit"]
    assert limit["period"] == "day" and limit["limit_usd"] == "1"
    # Two seats read ~250,000 tokens each at $10 a million: about $5, not the
    # fraction of a cent the last message alone would cost.
    assert Decimal(limit["estimate_low_usd"]) > Decimal("4.5")
    assert "daily budget on the site's models is $1.00" in error["message"]
    assert not Message.objects.exists() and not Run.objects.exists()
    assert kit.calls() == {"seat-0": 0, "seat-1": 0, "judge": 0, "synth": 0}


def test_the_last_message_alone_was_not_what_was_priced(kit):
    """The same conversation measured with and without its history: admission's
    estimate grows with every seat's input, times the seats."""
    _models(kit).update(input_price="10", output_price="0", context_length=1_000_000)
    config = runs.run_config(kit.conversation)
    question = "Summarise all of it."
    short = config | {"conversation": [{"role": "user", "content": question}]}
    long = config | {
        "conversation": [
            {"role": "user", "content": "x" * 400_000},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": question},
        ]
    }
    short_inputs = admission.seat_inputs(short, question, None)
    long_inputs = admission.seat_inputs(long, question, None)
    assert all(n > 400_000 for n in long_inputs) and all(n < 2_000 for n in short_inputs)
    short_low = admission.run_estimate(short, question, short_inputs)["low"]
    long_low = admission.run_estimate(long, question, long_inputs)["low"]
    # 2 seats × 100,000 tokens × $10 a million = $2 more.
    assert long_low - short_low == pytest.approx(Decimal("2"), rel=Decimal("0.01"))


def test_tools_and_schemas_count_in_what_a_seat_is_sent(client, kit, settings, failed_if_queued):
    """A caller's tools are sent to every seat (in its system prompt): too many
    characters of them are refused before a run, 413 with the numbers."""
    settings.INPUT_MAX_CHARS = 50_000
    _, key = create_key(kit.user, "tools")
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Looks things up. " * 4_000,  # 68,000 characters
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    body = {
        "model": "fusion/scripted",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [tool],
    }
    response = _api(client, key, body)
    assert response.status_code == 413, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "input_too_large"
    assert error["limit"]["limit"] == 50_000 and error["limit"]["length"] > 68_000
    assert not Run.objects.exists()


# --- runs at once reserve their estimate ----------------------------------------------


def _budget_for_one_run(kit: ScriptedPanel, settings) -> None:
    """A run's least estimate is ~800 tokens at $0.001: $0.80 (2 seats × 150, judge
    300, synthesis 200). A daily budget of $1 holds one such run, not two."""
    settings.RUN_BUDGET_USD, settings.DAILY_BUDGET_USD = None, Decimal("1")
    _models(kit).update(input_price="0", output_price="1000")


def test_two_runs_at_once_cannot_together_overspend_a_budget(
    kit, settings, monkeypatch, not_queued
):
    """Two starts at once, each of whose estimates fits the day's budget but not
    both: the first is admitted and reserves its estimate; the second, started while
    the first is still inside admission, waits for it and is refused with the amount
    held. Once the first run ends, what it did not spend is free again: a third run
    is admitted."""
    _budget_for_one_run(kit, settings)
    first_admitted, second_starting = threading.Event(), threading.Event()
    real_admit = admission.admit

    def admit_then_hold(*args, **kwargs):
        budget = real_admit(*args, **kwargs)
        if threading.current_thread().name == "first":
            first_admitted.set()
            # The second start begins while this one has not yet saved its run.
            assert second_starting.wait(timeout=10)
        return budget

    monkeypatch.setattr(admission, "admit", admit_then_hold)
    outcomes: dict[str, object] = {}

    def start(name: str) -> None:
        from django.db import connection

        try:
            if name == "second":
                assert first_admitted.wait(timeout=10)
                second_starting.set()
            outcomes[name] = start_run(kit.conversation, f"Question from the {name} start").run.pk
        except LimitReached as refused:
            outcomes[name] = refused
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(n,), name=n) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    first, refused = outcomes["first"], outcomes["second"]
    assert isinstance(first, int), first
    assert isinstance(refused, LimitReached), refused
    assert refused.status == 402 and refused.numbers["period"] == "day"
    assert Decimal(refused.numbers["held_usd"]) == Decimal("1")  # the first holds it all
    assert "held by runs still answering" in refused.message
    assert Run.objects.get(pk=first).config["budget"]["reserved_usd"] == "1"
    assert Run.objects.count() == 1

    # The first run answers briefly (a few cents) and ends: its reservation ends too.
    for seat in kit.seats:
        seat.enqueue(Reply.stream(["Canberra."]))
    kit.judge.enqueue(analysis_reply())
    kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
    loop.run(pipeline.execute(first))
    assert Run.objects.get(pk=first).status == Run.Status.DONE
    spent = sum(s.usd for s in Spend.objects.filter(run_id=first))
    assert Decimal(0) < spent < Decimal("0.2")
    third = start_run(kit.conversation, "A third question").run
    assert Decimal(third.config["budget"]["limit_usd"]) == Decimal(1) - spent


@pytest.mark.parametrize("ending", ["stopped", "failed"])
def test_a_reservation_ends_with_its_run_on_every_path(kit, settings, not_queued, ending):
    """A run stopped before it started, or failed (as the sweeper fails a run whose
    worker is gone: mark_failed), frees what it held."""
    _budget_for_one_run(kit, settings)
    first = start_run(kit.conversation, "First").run
    with pytest.raises(LimitReached):
        start_run(kit.conversation, "Second, while the first holds the budget")
    if ending == "stopped":
        assert stop_run(first)
    else:
        assert mark_failed(first.pk, Run.Failure.INTERNAL, "The worker went away.")
    assert Run.objects.get(pk=first.pk).status not in Run.ACTIVE
    start_run(kit.conversation, "Third, once the first has ended")
    assert Run.objects.count() == 2


# --- paid search is charged to whoever's key paid for it ------------------------------


@pytest.fixture
def loopback_counts_as_public(monkeypatch):
    """A user's own provider may only be on a public address, and offline there is
    none: the guard lets the scripted upstream's loopback address through, as it
    would a public one. The call still goes over a real socket."""
    monkeypatch.setattr(netguard, "_first_public", lambda host, addresses: addresses[0])
    monkeypatch.setattr(netguard, "check_not_this_site", lambda host, addresses, site: None)


def test_brave_search_on_a_users_own_provider_is_charged_to_the_ledger(
    settings, loopback_counts_as_public
):
    """The seat's model is the user's own (their key, their money: never in the
    ledger), but the search went out on the site's Brave key: $0.005 in the ledger,
    on this run, for this user."""
    with ScriptedServer() as brave:
        settings.SEARCH_BACKEND = "brave"
        settings.BRAVE_API_KEY = "site-brave-key"
        settings.BRAVE_SEARCH_URL = brave.base_url.removesuffix("/v1") + "/res/v1/web/search"
        settings.RUN_BUDGET_USD = None
        kit = ScriptedPanel(seats=1, tools=["web_search"])
        try:
            Provider.objects.filter(models__model_id="seat-0").update(owner=kit.user)
            query = "capital of Australia (accounting test)"
            loop.run(_forget_cached(query))
            brave.enqueue(
                Reply.json(
                    200,
                    {
                        "web": {
                            "results": [
                                {
                                    "title": "Canberra",
                                    "url": "https://example.org/canberra",
                                    "description": "Canberra is the capital of Australia.",
                                }
                            ]
                        }
                    },
                )
            )
            kit.seats[0].enqueue(
                Reply.tool_calls([("c1", "web_search", json.dumps({"query": query}))]),
                Reply.stream(["Canberra."]),
            )
            kit.judge.enqueue(analysis_reply())
            kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
            run_id = kit.ask()
            run = Run.objects.get(pk=run_id)
            # The paid searches are in the estimate, so the run's spend is watched.
            assert run.config["budget"]["reserved_usd"]
            loop.run(pipeline.execute(run_id))
            run = Run.objects.get(pk=run_id)
            assert run.status == Run.Status.DONE, run.failure_detail
            seat = run.seat_answers[0]
            assert [s["cost"] for s in seat.tool_steps] == ["0.005"]
            assert brave.requests[0]["headers"]["X-Subscription-Token"] == "site-brave-key"
            rows = Spend.objects.filter(run_id=run_id, user=kit.user)
            tools = rows.get(model_name="tools of Seat-0")
            assert tools.usd == Decimal("0.005") and not tools.assumed
            assert not rows.filter(model_name="Seat-0").exists()  # the user's own key
            assert rows.filter(model_name__in=["Judge", "Synth"]).count() == 2  # the site's
        finally:
            kit.close()


async def _forget_cached(query: str) -> None:
    """A cached result is no paid call: this query must reach the scripted server."""
    from chat.engine import live

    redis = live.redis_client()
    try:
        await redis.delete(search._cache_key("brave", query))
    finally:
        await redis.aclose()


def test_a_paid_search_in_the_estimate_lets_a_spent_budget_refuse_an_own_provider_run(
    kit, settings, not_queued
):
    """A panel of the user's own models costs the site nothing, unless its seats may
    search on the site's paid key: then the day's budget still applies."""
    settings.SEARCH_BACKEND = "brave"
    settings.RUN_BUDGET_USD, settings.DAILY_BUDGET_USD = None, Decimal("0.01")
    Provider.objects.filter(models__in=_models(kit)).update(owner=kit.user)
    kit.panel.tools = ["web_search"]
    kit.panel.save()
    estimate = admission.run_estimate(runs.run_config(kit.conversation), "q")
    assert estimate["high"] == Decimal("0.005") * 8 * 2  # 8 searches a seat, 2 seats
    Spend.objects.create(user=kit.user, usd=Decimal("0.01"), model_name="earlier")
    with pytest.raises(LimitReached) as refused:
        start_run(kit.conversation, "Look it up for me")
    assert refused.value.numbers["period"] == "day"

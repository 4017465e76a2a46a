"""What one user may consume: message size, runs at once and a minute, API keys,
spend budgets (refused before a run, stopped mid-run), a panel no longer shared.
Runs go through the real pipeline against scripted upstreams on loopback."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chat.api.keys import TooManyKeys, create_key
from chat.engine import loop, pipeline
from chat.engine.admission import LimitReached
from chat.engine.runs import start_run
from chat.models import Answer, Conversation, Message, Run
from limits.models import Limits, Spend
from panels.models import CatalogModel, Panel
from tests.pipeline_kit import ScriptedPanel, analysis_reply
from tests.scripted_server import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kit():
    kit = ScriptedPanel(seats=2)
    yield kit
    kit.close()


@pytest.fixture(autouse=True)
def not_queued(monkeypatch):
    """Admission is the subject here: the runs these tests start are not queued, or a
    worker of the session's live stack would take them and hold rows (and locks)
    while the test's database is emptied."""
    from chat.engine import runs

    monkeypatch.setattr(runs, "enqueue", lambda run_id: None)


def price(kit: ScriptedPanel, output_per_m: str) -> None:
    """Make every model of the kit cost `output_per_m` USD a million output tokens."""
    CatalogModel.objects.filter(provider__base_url__in=_urls(kit)).update(
        input_price="0", output_price=output_per_m
    )


def _urls(kit):
    servers = [*kit.seats, kit.judge, kit.synthesizer]
    return [s.base_url for s in servers]


def test_a_run_whose_estimate_is_over_the_run_budget_is_refused_and_nothing_saved(kit, settings):
    settings.RUN_BUDGET_USD = Decimal("0.05")
    price(kit, "100")  # 2 seats × 512 tokens + judge + synthesis ≈ $0.28 at most
    with pytest.raises(LimitReached) as refused:
        start_run(kit.conversation, "What is the capital of Australia?")
    assert refused.value.status == 402 and refused.value.code == "budget_exceeded"
    assert "over your budget of $0.05 a run" in refused.value.message
    numbers = refused.value.numbers
    assert numbers["period"] == "run" and Decimal(numbers["estimate_high_usd"]) > Decimal("0.05")
    assert not Message.objects.exists() and not Run.objects.exists()
    assert sum(len(s.requests) for s in kit.seats) == 0


def test_the_conversation_says_why_and_keeps_the_message(client, kit, settings):
    settings.RUN_BUDGET_USD = Decimal("0.05")
    price(kit, "100")
    client.force_login(kit.user)
    response = client.post(
        reverse("chat:send", args=[kit.conversation.pk]),
        {"content": "A question worth keeping"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 402
    assert "over your budget of $0.05 a run" in response.json()["error"]
    page = client.post(reverse("chat:send", args=[kit.conversation.pk]), {"content": "Still here?"})
    assert page.status_code == 402
    assert "Still here?" in page.content.decode()  # the text stays in the box
    assert not Message.objects.exists()


def test_a_run_is_stopped_mid_answer_when_its_real_spend_crosses_the_budget(kit, settings):
    """A seat streams a long answer on a dear model: the run stops as its spend
    crosses the budget, the text so far is kept, the ledger holds what it cost."""
    settings.RUN_BUDGET_USD = Decimal("2")
    price(kit, "1000")  # $0.001 a token: the budget lasts ~2,000 tokens of output
    counting = [f"{n}, " for n in range(20_000)]  # ~137,000 characters, ~34,000 tokens
    kit.seats[0].default = Reply.stream(counting, delay=0.0005)
    kit.seats[1].default = Reply.stream(["Canberra."])
    kit.judge.default = analysis_reply()
    kit.synthesizer.default = Reply.stream(["Canberra."])
    run_id = kit.ask()
    loop.run(pipeline.execute(run_id))
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.FAILED
    assert run.failure_reason == Run.Failure.BUDGET
    assert "over your budget a run ($2.00)" in run.failure_detail
    assert "The answers so far are kept" in run.failure_detail
    long_seat = run.answers.get(role=Answer.Role.SEAT, position=0)
    assert 8_000 <= len(long_seat.text) < 20_000  # cut near $2 of text, and what came is kept
    assert not run.answers.filter(role=Answer.Role.SYNTHESIZER).exists()
    spent = sum(s.usd for s in Spend.objects.filter(run_id=run_id))
    assert Decimal("2") <= spent < Decimal("4")  # stopped near the line, not at the end
    assert len(kit.judge.requests) == 0


def test_a_daily_budget_counts_every_run_of_the_day(kit, settings):
    settings.DAILY_BUDGET_USD = Decimal("1")
    price(kit, "1000")  # a run's least estimate: ~800 tokens, $0.80
    kit.seats[0].default = Reply.stream([f"{n}, " for n in range(700)])  # $0.70
    kit.seats[1].default = Reply.stream(["Canberra."])
    kit.judge.default = analysis_reply()
    kit.synthesizer.default = Reply.stream(["Canberra."])
    settings.RUN_BUDGET_USD = None
    run_id = kit.ask()
    loop.run(pipeline.execute(run_id))
    spent = sum(s.usd for s in Spend.objects.filter(user=kit.user))
    assert Decimal("0.7") < spent < Decimal("0.8")  # $0.20 left: not enough for a run
    with pytest.raises(LimitReached) as refused:
        start_run(kit.conversation, "And of New Zealand?")
    numbers = refused.value.numbers
    assert refused.value.status == 402 and numbers["period"] == "day"
    assert Decimal(numbers["spent_usd"]) == spent and numbers["limit_usd"] == "1"
    assert "daily budget on the site's models is $1.00" in refused.value.message
    assert "renews in" in refused.value.message


def test_an_unknown_price_counts_as_the_catalogs_dearest_never_as_free(kit, settings):
    settings.RUN_BUDGET_USD = settings.DAILY_BUDGET_USD = None
    CatalogModel.objects.filter(provider__base_url__in=_urls(kit)).update(
        input_price=None, output_price=None
    )
    dear = CatalogModel.objects.create(
        provider=kit.panel.judge.provider,
        model_id="dear",
        display_name="Dear",
        input_price="10",
        output_price="30",
    )
    kit.seats[0].default = Reply.stream(
        ["Canberra."], usage={"prompt_tokens": 1000, "completion_tokens": 1000}
    )
    kit.seats[1].default = Reply.stream(
        ["Canberra."], usage={"prompt_tokens": 1000, "completion_tokens": 1000}
    )
    kit.judge.default = analysis_reply()
    kit.synthesizer.default = Reply.stream(["Canberra."])
    run_id = kit.ask()
    loop.run(pipeline.execute(run_id))
    seat_spend = Spend.objects.filter(run_id=run_id, model_name="Seat-0").get()
    assert seat_spend.assumed
    assert seat_spend.usd == Decimal("0.04")  # 1,000 × $10/M + 1,000 × $30/M
    assert dear.pk


def test_a_users_own_provider_is_not_the_sites_money(kit, settings):
    settings.RUN_BUDGET_USD = Decimal("0.000001")
    price(kit, "1000")
    from panels.models import Provider

    Provider.objects.filter(base_url__in=_urls(kit)).update(owner=kit.user)
    start_run(kit.conversation, "Runs on my own keys")  # admitted: no site money at stake
    assert Run.objects.count() == 1


def test_a_message_over_the_users_limit_is_refused_with_numbers(kit):
    Limits.objects.create(user=kit.user, message_chars=100)
    with pytest.raises(LimitReached) as refused:
        start_run(kit.conversation, "x" * 101)
    assert refused.value.status == 413
    assert refused.value.message.startswith("The message is 101 characters; the limit is 100.")


def test_runs_at_once_are_capped_per_user_not_per_conversation(kit, settings):
    settings.CONCURRENT_RUNS = 2
    conversations = [Conversation.objects.create(owner=kit.user, panel=kit.panel) for _ in range(3)]
    start_run(conversations[0], "one")
    start_run(conversations[1], "two")
    with pytest.raises(LimitReached) as refused:
        start_run(conversations[2], "three")
    assert refused.value.status == 429 and refused.value.code == "too_many_runs"
    assert "2 runs answering already" in refused.value.message
    # Someone else is not affected by alice's runs.
    Panel.objects.filter(pk=kit.panel.pk).update(visibility="public")
    bob = get_user_model().objects.create_user("bob")
    start_run(Conversation.objects.create(owner=bob, panel=kit.panel), "bob's")


def test_runs_a_minute_are_capped(kit, settings):
    settings.RUNS_PER_MINUTE = 3
    settings.CONCURRENT_RUNS = 10
    conversations = [Conversation.objects.create(owner=kit.user, panel=kit.panel) for _ in range(4)]
    for conversation in conversations[:3]:
        start_run(conversation, "q")
    with pytest.raises(LimitReached) as refused:
        start_run(conversations[3], "q")
    assert refused.value.status == 429 and 1 <= refused.value.retry_after <= 60
    assert "Try again in" in refused.value.message


def test_an_admin_override_beats_the_default_row_which_beats_settings(kit, settings):
    settings.CONCURRENT_RUNS = 1
    Limits.objects.create(user=None, concurrent_runs=5)
    from limits.effective import limits_for

    assert limits_for(kit.user).concurrent_runs == 5
    Limits.objects.create(user=kit.user, concurrent_runs=7, unlimited_spend=True)
    effective = limits_for(kit.user)
    assert effective.concurrent_runs == 7 and effective.daily_budget_usd is None


def test_api_keys_per_user_are_capped(db, settings):
    settings.API_KEYS_PER_USER = 2
    alice = get_user_model().objects.create_user("alice")
    first, _ = create_key(alice, "one")
    create_key(alice, "two")
    with pytest.raises(TooManyKeys, match="2 active API keys"):
        create_key(alice, "three")
    first.revoked_at = "2026-01-01T00:00:00Z"
    first.save()
    create_key(alice, "three")  # a revoked key frees its place


def test_a_panel_made_private_stops_answering_in_the_conversations_it_was_shared_to(kit):
    kit.panel.visibility = "public"
    kit.panel.save()
    bob = get_user_model().objects.create_user("bob")
    conversation = Conversation.objects.create(owner=bob, panel=kit.panel)
    start_run(conversation, "first")
    Run.objects.update(status=Run.Status.DONE)
    Panel.objects.filter(pk=kit.panel.pk).update(visibility="private")
    with pytest.raises(LimitReached) as refused:
        start_run(conversation, "second")
    assert refused.value.status == 403
    assert "no longer shared with you" in refused.value.message
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_the_account_page_shows_spend_and_what_is_left(client, kit, settings):
    settings.DAILY_BUDGET_USD = Decimal("5")
    settings.MONTHLY_BUDGET_USD = None
    Spend.objects.create(user=kit.user, usd=Decimal("1.25"), model_name="Seat-0")
    client.force_login(kit.user)
    page = client.get(reverse("account")).content.decode()
    assert "Spend and limits" in page
    assert "$1.25" in page and "$5.00" in page and "$3.75" in page
    assert "no limit" in page  # the month


def test_an_api_keys_monthly_limit_is_its_own_budget(kit, client, settings):
    settings.RUN_BUDGET_USD = settings.DAILY_BUDGET_USD = settings.MONTHLY_BUDGET_USD = None
    price(kit, "1")
    client.force_login(kit.user)
    bad = client.post(reverse("chat:api_key_create"), {"name": "x", "spend_limit": "lots"})
    assert bad.status_code == 302 and not kit.user.api_keys.exists()
    assert "is not an amount in dollars" in client.get(reverse("panels:api_keys")).content.decode()
    client.post(reverse("chat:api_key_create"), {"name": "capped", "spend_limit": "$0.50"})
    record = kit.user.api_keys.get()
    assert record.spend_limit_usd == Decimal("0.5")
    Spend.objects.create(user=kit.user, api_key=record, usd=Decimal("0.5"), model_name="m")
    with pytest.raises(LimitReached) as refused:
        start_run(kit.conversation, "through the key", {"via": "api", "api_key": record.pk})
    assert "This API key's monthly budget" in refused.value.message
    start_run(kit.conversation, "from the conversation, the user's own budgets only")
    page = client.get(reverse("panels:api_keys")).content.decode()
    assert "$0.50 of $0.50" in page

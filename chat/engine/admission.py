"""May this user start this run now? The one check every door passes through
(chat/engine/runs.py create_run): message size, what each seat will be sent, runs a
minute, runs at once, and the spend budgets. A refusal says what was reached and
what to do, with numbers the API returns as they are.

The estimate prices what every seat will be sent (seat_input.py: its system prompt,
the whole conversation fitted to its window, the caller's tools and schema), and
paid web searches. An admitted run reserves its estimate: the runs of a user still
answering hold what they reserved less what they have spent, and the next run is
admitted against what is left. A run's reservation ends with the run (done, failed,
cancelled or swept: it is the run's row that holds it), so what it did not spend is
free again. Starts of one user take turns (create_run locks the user's row; SQLite
begins every transaction IMMEDIATE), so two at once cannot both take the same money.

It lives in the engine because it decides whether a run may start, counting the
user's runs and their API key's budget; limits/ keeps the rules it applies (the
effective limits) and the spend ledger it reads, and never imports the engine.
"""

import math
from dataclasses import dataclass, field
from decimal import Decimal

import redis
from django.conf import settings
from django.db.models import Sum

from chat.models import ApiKey, Run
from core import windows
from limits import spend
from limits.effective import Effective, limits_for
from limits.models import Spend
from limits.spend import usd
from panels.estimate import Line, estimate_config
from panels.models import CatalogModel, Panel

from .context import turns_of
from .live import shared_sync_redis
from .seat_input import seat_messages, seat_tool_calls, seat_tool_names, sent_outside_messages
from .tools.search import PRICES as SEARCH_PRICES

RATE_WINDOW_S = 60


@dataclass
class LimitReached(Exception):
    """A run refused before anything was saved. `status` is the HTTP answer (402
    for money, 429 for rates, 413 for size); `numbers` go out with API errors."""

    code: str
    message: str
    status: int
    retry_after: int | None = None
    numbers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def admit(
    user,
    config: dict,
    content: str,
    *,
    via: str,
    api_key_id: int | None,
    parent_id: int | None = None,
) -> dict | None:
    """Raise LimitReached, or return the run's budget: {"limit_usd", "why",
    "reserved_usd"} when its spend must be watched (None when nothing it calls costs
    the site money). `parent_id` is the message the new one will follow: the seats are
    sent the turns of its branch (an API caller's conversation is in `config`)."""
    limits = limits_for(user)
    evaluation = via == "eval"  # evaluations have their own bounds (evals/), but pay
    inputs = seat_inputs(config, content, parent_id)
    if not evaluation:
        _check_size(limits, content)
        _check_input(inputs)
        _check_concurrent(limits, user)
    budget = _check_budgets(limits, user, config, content, api_key_id, inputs)
    if not evaluation:
        _count_rate(limits, user)  # last: a refused run does not use up the minute
    return budget


def _check_size(limits: Effective, content: str) -> None:
    if len(content) > limits.message_chars:
        raise LimitReached(
            "message_too_long",
            f"The message is {len(content):,} characters; the limit is "
            f"{limits.message_chars:,}. Shorten it, or split it over several messages.",
            413,
            numbers={"limit": limits.message_chars, "length": len(content)},
        )


def seat_inputs(config: dict, content: str, parent_id: int | None) -> list[int]:
    """The characters each seat will be sent, as seats.py will send them: its system
    prompt and notes, the conversation fitted to its model's window (the API's whole
    `messages`, or the turns of the branch ending at message `parent_id` and the
    question), the caller's tools and response format. A removed model is sent nothing."""
    seats = config.get("seats", [])
    turns = None if "conversation" in config else turns_of(parent_id)
    ids = [(seat.get("model") or {}).get("catalog_id") for seat in seats]
    models = CatalogModel.objects.in_bulk([i for i in ids if i is not None])
    sizes = []
    for seat, catalog_id in zip(seats, ids, strict=True):
        model = models.get(catalog_id) if catalog_id is not None else None
        if model is None:
            sizes.append(0)
            continue
        messages = seat_messages(config, seat, content, turns, model.context_length)
        size = sum(len(m.content) for m in messages)
        sizes.append(size + sent_outside_messages(config, seat))
    return sizes


def _check_input(inputs: list[int]) -> None:
    """What one seat is sent, all of it: a long conversation is fitted to the seat's
    window, but the system prompt, tools and schemas are sent whole."""
    limit = settings.INPUT_MAX_CHARS
    largest = max(inputs, default=0)
    if largest > limit:
        raise LimitReached(
            "input_too_large",
            f"A seat would be sent {largest:,} characters (the conversation as it fits "
            f"the seat's window, with the system prompt, tools and response format); the "
            f"limit is {limit:,}. Send fewer or smaller tools or schemas, or a shorter "
            "conversation.",
            413,
            numbers={"limit": limit, "length": largest},
        )


def _check_concurrent(limits: Effective, user) -> None:
    running = Run.objects.filter(
        message__conversation__owner=user,
        message__conversation__hidden=False,
        status__in=Run.ACTIVE,
    ).count()
    if running >= limits.concurrent_runs:
        raise LimitReached(
            "too_many_runs",
            f"You have {running} runs answering already, the most you may have at once "
            f"({limits.concurrent_runs}). Wait for one to finish, or stop one.",
            429,
            retry_after=5,
            numbers={"limit": limits.concurrent_runs, "running": running},
        )


def _count_rate(limits: Effective, user) -> None:
    """Runs a minute, in a window opened by the first run (like the API's keys)."""
    client = shared_sync_redis()
    try:
        ((count, wait),) = windows.count(client, [f"fr:runrate:{user.pk}"], RATE_WINDOW_S)
    except redis.RedisError:
        return  # the queue is down too: enqueueing will fail in words
    if count > limits.runs_per_minute:
        raise LimitReached(
            "rate_limited",
            f"You started {limits.runs_per_minute} runs in the last minute, the most "
            f"allowed. Try again in {wait} s.",
            429,
            retry_after=wait,
            numbers={"limit": limits.runs_per_minute, "period": "minute"},
        )


def run_estimate(config: dict, content: str, inputs: list[int] | None = None) -> dict:
    """The builder's estimate of this run, priced as budgets count it: each seat's
    input measured (`inputs`, characters: seat_inputs), and the paid web searches its
    seats may make, which the site's search key pays whoever's model answers."""
    dearest = spend.dearest_prices()
    estimate = estimate_config(
        config,
        content,
        prices=lambda m: spend.budget_price(m, dearest),
        # ~4 characters a token, as a call with no usage reported is counted
        seat_inputs=[math.ceil(chars / 4) for chars in inputs] if inputs else None,
    )
    searches = _paid_searches(config)
    if searches and estimate["high"] is not None:
        price = SEARCH_PRICES[settings.SEARCH_BACKEND]
        name = f"{settings.SEARCH_BACKEND} × {searches}"
        line = Line("Web search", name, Decimal(0), price * searches)
        estimate["lines"].append(line)
        estimate["high"] += line.high
    return estimate


def _paid_searches(config: dict) -> int:
    """The most web searches the run's seats may make, when the site's search
    backend charges for them (else 0)."""
    if settings.SEARCH_BACKEND not in SEARCH_PRICES:
        return 0
    return sum(
        seat_tool_calls(seat)
        for seat in config.get("seats", [])
        if "web_search" in seat_tool_names(config, seat)
    )


def held_by_runs(user) -> tuple[Decimal, dict[int, Decimal]]:
    """What the user's runs still answering hold: each its reservation less what it
    has spent so far (that is in the ledger already). In all, and by API key."""
    active = Run.objects.filter(message__conversation__owner=user, status__in=Run.ACTIVE)
    reserved = {
        pk: (Decimal(str(amount)), key)
        for pk, amount, key in active.values_list(
            "pk", "config__budget__reserved_usd", "config__api_key"
        )
        if amount is not None
    }
    if not reserved:
        return Decimal(0), {}
    spent = dict(
        Spend.objects.filter(run_id__in=reserved)
        .values("run_id")
        .annotate(s=Sum("usd"))
        .values_list("run_id", "s")
    )
    total, by_key = Decimal(0), dict[int, Decimal]()
    for pk, (amount, key) in reserved.items():
        held = max(Decimal(0), amount - (spent.get(pk) or Decimal(0)))
        total += held
        if key is not None:
            by_key[key] = by_key.get(key, Decimal(0)) + held
    return total, by_key


def _check_budgets(
    limits: Effective,
    user,
    config: dict,
    content: str,
    api_key_id: int | None,
    inputs: list[int] | None = None,
) -> dict | None:
    estimate = run_estimate(config, content, inputs)
    low, high = estimate["low"] or Decimal(0), estimate["high"] or Decimal(0)
    if high <= 0:
        return None  # free models and the user's own providers only, no paid search
    if limits.run_budget_usd is not None and high > limits.run_budget_usd:
        raise LimitReached(
            "budget_exceeded",
            f"This run could cost up to {usd(high)} on the site's models (estimated), over "
            f"your budget of {usd(limits.run_budget_usd)} a run. Choose cheaper models or "
            "fewer seats, lower the seats' max tokens, use your own provider, or ask an "
            "administrator to raise your budget.",
            402,
            numbers={"period": "run", "limit_usd": str(limits.run_budget_usd), **_est(estimate)},
        )
    left: list[tuple[Decimal, str]] = []
    if limits.run_budget_usd is not None:
        left.append((limits.run_budget_usd, "your budget a run"))
    starts, ends = spend.period_starts(), spend.period_ends()
    periods = (("day", limits.daily_budget_usd), ("month", limits.monthly_budget_usd))
    held, held_by_key = held_by_runs(user)
    for period, cap in periods:
        if cap is None:
            continue
        spent = spend.spent_by(user, starts[period])
        remaining = cap - spent - held
        if remaining < max(low, Decimal("0.000001")):
            raise _over(period, cap, spent, held, ends[period], estimate, "your")
        left.append((remaining, f"what is left of your {_adjective(period)} budget"))
    if api_key_id is not None:
        key_cap = ApiKey.objects.filter(pk=api_key_id).values_list("spend_limit_usd", flat=True)
        cap = key_cap.first()
        if cap is not None:
            spent = spend.spent_by_key(api_key_id, starts["month"])
            key_held = held_by_key.get(api_key_id, Decimal(0))
            remaining = cap - spent - key_held
            if remaining < max(low, Decimal("0.000001")):
                whose = "this API key's"
                raise _over("month", cap, spent, key_held, ends["month"], estimate, whose)
            left.append((remaining, "what is left of this API key's monthly budget"))
    if not left:
        return None
    limit, why = min(left, key=lambda pair: pair[0])
    # The run holds its estimate (at most its limit) until it ends.
    reserved = min(high, limit)
    return {"limit_usd": str(limit), "why": why, "reserved_usd": str(reserved)}


def _adjective(period: str) -> str:
    return {"day": "daily", "month": "monthly"}[period]


def _est(estimate: dict) -> dict:
    return {"estimate_low_usd": str(estimate["low"]), "estimate_high_usd": str(estimate["high"])}


def _over(period, cap, spent, held, resets_at, estimate, whose: str) -> LimitReached:
    hours = max(1, math.ceil((resets_at - spend.timezone.now()).total_seconds() / 3600))
    when = f"in {hours} h" if period == "day" else f"on {resets_at:%-d %B}"
    holding = (
        f" and {usd(held)} is held by runs still answering (what they do not spend is "
        "free again when they end)"
        if held > 0
        else ""
    )
    return LimitReached(
        "budget_exceeded",
        f"{whose[0].upper()}{whose[1:]} {_adjective(period)} budget on the site's models is "
        f"{usd(cap)}, and {usd(spent)} of it is spent{holding}: not enough for this run. "
        f"It renews {when}. The free local models and your own providers still answer; an "
        "administrator can raise the budget.",
        402,
        numbers={
            "period": period,
            "limit_usd": str(cap),
            "spent_usd": str(spent),
            "held_usd": str(held),
            "resets_at": resets_at.isoformat(),
            **_est(estimate),
        },
    )


def reachable(user, config: dict) -> None:
    """A run may only use a panel its owner can still reach: a panel made private
    since the conversation began stops answering it (LimitReached, 403). So does
    the panel a single model may consult (its `server_tools`' panel, when a saved one)."""
    panel = config.get("panel")
    if panel and not Panel.objects.reachable_by(user).filter(pk=panel["id"]).exists():
        raise LimitReached(
            "panel_unreachable",
            f"The panel “{panel.get('name', panel.get('slug'))}” is no longer shared with "
            "you, so it cannot answer here. Start a new conversation with another panel.",
            403,
        )
    consulted = ((config.get("server_tools") or {}).get("panel") or {}).get("panel")
    if consulted and not Panel.objects.reachable_by(user).filter(pk=consulted["id"]).exists():
        raise LimitReached(
            "panel_unreachable",
            f"The panel “{consulted.get('name', consulted.get('slug'))}”, which this model "
            "may consult, is no longer shared with you. Start a new conversation and "
            "choose another panel to consult.",
            403,
        )

"""May this user start this run now? The one check every door passes through
(chat/engine/runs.py create_run): message size, runs a minute, runs at once, and
the spend budgets. A refusal says what was reached and what to do, with numbers
the API returns as they are.
"""

import math
from dataclasses import dataclass, field
from decimal import Decimal

import redis

from chat.engine.live import sync_redis
from chat.models import ApiKey, Run
from fusionroom import windows
from panels.estimate import estimate_config
from panels.models import Panel

from . import spend
from .effective import Effective, limits_for

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


def usd(amount: Decimal) -> str:
    """Dollars for a person: $1.50, $0.25, and fractions of a cent as $0.0042."""
    if amount == 0:
        return "$0"
    if abs(amount) >= Decimal("0.01"):
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0")


def admit(user, config: dict, content: str, *, via: str, api_key_id: int | None) -> dict | None:
    """Raise LimitReached, or return the run's budget: {"limit_usd", "why"} when its
    spend must be watched (None when nothing it calls costs the site money)."""
    limits = limits_for(user)
    evaluation = via == "eval"  # evaluations have their own bounds (evals/), but pay
    if not evaluation:
        _check_size(limits, content)
        _check_concurrent(limits, user)
    budget = _check_budgets(limits, user, config, content, api_key_id)
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
    client = sync_redis()
    try:
        ((count, wait),) = windows.count(client, [f"fr:runrate:{user.pk}"], RATE_WINDOW_S)
    except redis.RedisError:
        return  # the queue is down too: enqueueing will fail in words
    finally:
        client.close()
    if count > limits.runs_per_minute:
        raise LimitReached(
            "rate_limited",
            f"You started {limits.runs_per_minute} runs in the last minute, the most "
            f"allowed. Try again in {wait} s.",
            429,
            retry_after=wait,
            numbers={"limit": limits.runs_per_minute, "period": "minute"},
        )


def run_estimate(config: dict, content: str) -> dict:
    """The builder's estimate of this run, priced as budgets count it."""
    dearest = spend.dearest_prices()
    return estimate_config(config, content, prices=lambda m: spend.budget_price(m, dearest))


def _check_budgets(
    limits: Effective, user, config: dict, content: str, api_key_id: int | None
) -> dict | None:
    estimate = run_estimate(config, content)
    low, high = estimate["low"] or Decimal(0), estimate["high"] or Decimal(0)
    if high <= 0:
        return None  # free models and the user's own providers only
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
    for period, cap in (("day", limits.daily_budget_usd), ("month", limits.monthly_budget_usd)):
        if cap is None:
            continue
        spent = spend.spent_by(user, starts[period])
        remaining = cap - spent
        if remaining < max(low, Decimal("0.000001")):
            raise _over(period, cap, spent, ends[period], estimate, "your")
        left.append((remaining, f"what is left of your {_adjective(period)} budget"))
    if api_key_id is not None:
        key_cap = ApiKey.objects.filter(pk=api_key_id).values_list("spend_limit_usd", flat=True)
        cap = key_cap.first()
        if cap is not None:
            spent = spend.spent_by_key(api_key_id, starts["month"])
            remaining = cap - spent
            if remaining < max(low, Decimal("0.000001")):
                raise _over("month", cap, spent, ends["month"], estimate, "this API key's")
            left.append((remaining, "what is left of this API key's monthly budget"))
    if not left:
        return None
    limit, why = min(left, key=lambda pair: pair[0])
    return {"limit_usd": str(limit), "why": why}


def _adjective(period: str) -> str:
    return {"day": "daily", "month": "monthly"}[period]


def _est(estimate: dict) -> dict:
    return {"estimate_low_usd": str(estimate["low"]), "estimate_high_usd": str(estimate["high"])}


def _over(period, cap, spent, resets_at, estimate, whose: str) -> LimitReached:
    hours = max(1, math.ceil((resets_at - spend.timezone.now()).total_seconds() / 3600))
    when = f"in {hours} h" if period == "day" else f"on {resets_at:%-d %B}"
    return LimitReached(
        "budget_exceeded",
        f"{whose[0].upper()}{whose[1:]} {_adjective(period)} budget on the site's models is "
        f"{usd(cap)}, and {usd(spent)} of it is spent: not enough for this run. It renews "
        f"{when}. The free local models and your own providers still answer; an "
        "administrator can raise the budget.",
        402,
        numbers={
            "period": period,
            "limit_usd": str(cap),
            "spent_usd": str(spent),
            "resets_at": resets_at.isoformat(),
            **_est(estimate),
        },
    )


def reachable(user, config: dict) -> None:
    """A run may only use a panel its owner can still reach: a panel made private
    since the conversation began stops answering it (LimitReached, 403)."""
    panel = config.get("panel")
    if not panel:
        return
    if not Panel.objects.reachable_by(user).filter(pk=panel["id"]).exists():
        raise LimitReached(
            "panel_unreachable",
            f"The panel “{panel.get('name', panel.get('slug'))}” is no longer shared with "
            "you, so it cannot answer here. Start a new conversation with another panel.",
            403,
        )

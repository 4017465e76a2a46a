"""A user's spend and what is left, for the Account page."""

from decimal import Decimal

from . import spend
from .effective import limits_for
from .spend import usd


def spend_summary(user) -> dict:
    limits = limits_for(user)
    starts, ends = spend.period_starts(), spend.period_ends()
    periods = []
    for period, label, cap in (
        ("day", "Today", limits.daily_budget_usd),
        ("month", "This month", limits.monthly_budget_usd),
    ):
        spent = spend.spent_by(user, starts[period])
        periods.append(
            {
                "label": label,
                "spent": usd(spent),
                "budget": None if cap is None else usd(cap),
                "left": None if cap is None else usd(max(cap - spent, Decimal(0))),
                "used_percent": None if not cap else min(100, int(spent * 100 / cap)),
                "renews": ends[period],
            }
        )
    run_budget = None if limits.run_budget_usd is None else usd(limits.run_budget_usd)
    return {"limits": limits, "periods": periods, "run_budget": run_budget}

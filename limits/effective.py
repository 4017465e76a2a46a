"""The limits that apply to one user: their own row, else everyone's row, else the
site's settings (fusionroom/settings.py), field by field."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from .models import Limits


@dataclass(frozen=True)
class Effective:
    runs_per_minute: int
    concurrent_runs: int
    api_keys: int
    message_chars: int
    run_budget_usd: Decimal | None  # None: no cap
    daily_budget_usd: Decimal | None
    monthly_budget_usd: Decimal | None


_COUNTS = {
    "runs_per_minute": "RUNS_PER_MINUTE",
    "concurrent_runs": "CONCURRENT_RUNS",
    "api_keys": "API_KEYS_PER_USER",
    "message_chars": "MESSAGE_MAX_CHARS",
}
_BUDGETS = {
    "run_budget_usd": "RUN_BUDGET_USD",
    "daily_budget_usd": "DAILY_BUDGET_USD",
    "monthly_budget_usd": "MONTHLY_BUDGET_USD",
}


def limits_for(user) -> Effective:
    rows = list(Limits.objects.filter(Q(user=user) | Q(user__isnull=True)))
    rows.sort(key=lambda row: row.user_id is None)  # the user's own row first
    unlimited = any(row.unlimited_spend for row in rows)

    def pick(field: str, setting: str):
        for row in rows:
            if (value := getattr(row, field)) is not None:
                return value
        return getattr(settings, setting)

    values = {field: pick(field, setting) for field, setting in _COUNTS.items()}
    for field, setting in _BUDGETS.items():
        values[field] = None if unlimited else pick(field, setting)
    return Effective(**values)

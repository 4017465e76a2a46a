"""Spend on the site's providers: what a call cost, counted into the ledger, and
what a user (or one API key) spent in a period.

A call whose price is unknown counts at the catalog's dearest prices, never as
free: a model added without prices must not be a way around a budget.
"""

import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Max, Q, Sum
from django.utils import timezone

from panels.models import CatalogModel
from panels.providers.tokens import estimate_tokens

from .models import Spend

MILLION = Decimal(1_000_000)


def dearest_prices() -> tuple[Decimal, Decimal]:
    """USD per token (input, output): the catalog's highest of each, else the setting."""
    top = CatalogModel.objects.filter(is_active=True).aggregate(
        i=Max("input_price"), o=Max("output_price")
    )
    fallback_in, fallback_out = settings.UNKNOWN_PRICE_PER_M
    # A catalog of free local models only has no "dearest" worth the name.
    per_m_in = top["i"] if top["i"] else (fallback_in or Decimal(0))
    per_m_out = top["o"] if top["o"] else (fallback_out or Decimal(0))
    return Decimal(per_m_in) / MILLION, Decimal(per_m_out) / MILLION


def budget_price(model: CatalogModel | None, dearest: tuple[Decimal, Decimal]):
    """What a call on `model` costs a budget a token: nothing on a user's own
    provider (their key, their money) or a removed model (no call is made)."""
    if model is None or model.provider.owner_id is not None:
        return Decimal(0), Decimal(0)
    return model.price_per_token() or dearest


def period_starts(now: datetime.datetime | None = None) -> dict[str, datetime.datetime]:
    """The start of today and of this month, in the site's time zone."""
    local = timezone.localtime(now)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"day": day, "month": day.replace(day=1)}


def period_ends(now: datetime.datetime | None = None) -> dict[str, datetime.datetime]:
    starts = period_starts(now)
    month = starts["month"]
    next_month = (month + datetime.timedelta(days=32)).replace(day=1)
    return {"day": starts["day"] + datetime.timedelta(days=1), "month": next_month}


def spent_by(user, since: datetime.datetime) -> Decimal:
    total = Spend.objects.filter(user=user, created_at__gte=since).aggregate(s=Sum("usd"))["s"]
    return total or Decimal(0)


def spent_by_key(api_key_id: int, since: datetime.datetime) -> Decimal:
    rows = Spend.objects.filter(api_key_id=api_key_id, created_at__gte=since)
    return rows.aggregate(s=Sum("usd"))["s"] or Decimal(0)


def keys_with_spend(user):
    """The user's API keys, each with `month_usd`: its spend this calendar month."""
    since = period_starts()["month"]
    return user.api_keys.annotate(
        month_usd=Sum("spends__usd", filter=Q(spends__created_at__gte=since))
    )


def usd(amount: Decimal) -> str:
    """Dollars for a person: $1.50, $0.25, and fractions of a cent as $0.0042."""
    if amount == 0:
        return "$0"
    if abs(amount) >= Decimal("0.01"):
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0")


def parse_limit(raw: str) -> Decimal | None:
    """A spend limit typed by a person: empty for none; else ValueError in words."""
    raw = raw.strip().removeprefix("$")
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise ValueError(f"“{raw}” is not an amount in dollars; write e.g. 5 or 0.50.") from None
    if not value.is_finite() or not 0 <= value <= 100_000:
        raise ValueError("A spend limit is from $0 to $100,000 (empty: no limit of its own).")
    return value.quantize(Decimal("0.0001"))


def charge(run, answer, tools_usd: Decimal = Decimal(0)) -> Decimal:
    """Record one finished call of `run` on a site provider; returns what it counted.
    A recorded cost holds its paid tool calls already (`tools_usd`); a cost assumed
    from the tokens has them added."""
    cost_usd, assumed = answer.cost_usd, answer.cost_usd is None
    if assumed:
        price_in, price_out = dearest_prices()
        tokens_out = answer.output_tokens
        if tokens_out is None:
            tokens_out = estimate_tokens(answer.text)
        cost_usd = price_in * (answer.input_tokens or 0) + price_out * tokens_out + tools_usd
    if cost_usd <= 0:
        return Decimal(0)
    _record(run, answer.model_name, cost_usd, assumed)
    return cost_usd


def charge_tools(run, answer, tools_usd: Decimal) -> Decimal:
    """Record what an answer's tool calls cost the site (a paid web search on the
    site's key) when the model call itself was on the user's own provider."""
    if tools_usd <= 0:
        return Decimal(0)
    _record(run, f"tools of {answer.model_name}", tools_usd, assumed=False)
    return tools_usd


def _record(run, model_name: str, cost_usd: Decimal, assumed: bool) -> None:
    Spend.objects.create(
        user_id=run.message.conversation.owner_id,
        run_id=run.pk,
        api_key_id=run.config.get("api_key"),
        model_name=model_name[:200],
        usd=cost_usd,
        assumed=assumed,
    )

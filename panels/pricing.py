"""The cost of one call: what the provider reported, else tokens × catalog price,
else unknown. Never a silent zero."""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Cost:
    usd: Decimal | None
    source: str  # "provider" | "catalog" | "free" | "unknown"

    @property
    def known(self) -> bool:
        return self.usd is not None

    def display(self) -> str:
        if self.usd is None:
            return "unknown"
        if self.usd == 0:
            return "free"
        return f"${self.usd:.6f}".rstrip("0").rstrip(".") if self.usd < 1 else f"${self.usd:.2f}"


UNKNOWN = Cost(None, "unknown")


def cost_of(
    input_tokens: int,
    output_tokens: int,
    reported: float | None,
    prices: tuple[Decimal, Decimal] | None,
) -> Cost:
    """prices: USD per token (input, output), or None when the catalog has none."""
    if reported is not None:
        return Cost(Decimal(str(reported)), "provider")
    if prices is None:
        return UNKNOWN
    usd = prices[0] * input_tokens + prices[1] * output_tokens
    return Cost(usd, "free" if usd == 0 else "catalog")


def add(costs: list[Cost]) -> Cost:
    """A total is only known when every part is known."""
    if any(c.usd is None for c in costs):
        return UNKNOWN
    return Cost(sum((c.usd for c in costs if c.usd is not None), Decimal(0)), "sum")

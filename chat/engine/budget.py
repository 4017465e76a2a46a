"""A run's spend against its budget, watched while it runs.

The budget was fixed when the run was admitted (chat/engine/admission.py): the least of
the user's budget a run and what is left of their daily, monthly and API-key
budgets. Finished calls count what they cost; calls still streaming count an
estimate of what they cost so far (their prompt, and the text they sent at the
model's price), so a long answer on a dear model is stopped as it crosses the
line, not after it.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from limits.spend import usd


@dataclass
class Streaming:
    """One call in flight: its price a token and what it has cost so far. A delta
    counts as a token, as panels/calls.py counts a call the server sent no usage for."""

    prices: tuple[Decimal, Decimal]
    input_tokens: int
    deltas: int = 0

    def cost(self) -> Decimal:
        return self.prices[0] * self.input_tokens + self.prices[1] * self.deltas


@dataclass
class RunBudget:
    limit: Decimal | None = None
    why: str = ""
    spent: Decimal = Decimal(0)
    streaming: dict[int, Streaming] = field(default_factory=dict)

    @classmethod
    def of(cls, config: dict) -> "RunBudget":
        budget = config.get("budget")
        if not budget:
            return cls()
        return cls(Decimal(budget["limit_usd"]), budget.get("why", "your budget"))

    @property
    def watched(self) -> bool:
        return self.limit is not None

    def so_far(self) -> Decimal:
        return self.spent + sum((s.cost() for s in self.streaming.values()), Decimal(0))

    def crossed(self) -> str:
        """Words for the conversation when the run went over its budget, else ""."""
        if self.limit is None:
            return ""
        so_far = self.so_far()
        if so_far <= self.limit:
            return ""
        return (
            f"Stopped: this run had spent about {usd(so_far)} on the site's models, over "
            f"{self.why} ({usd(self.limit)}). The answers so far are kept. See your spend "
            "on the Account page."
        )

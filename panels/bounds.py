"""The one set of bounds on a panel's numbers: its seats' and its own.

The builder, recipe import and the OpenAI-compatible API all check numbers here,
so a value one of them accepts the others accept too, and every refusal states the
same range. Each place names the field its own way (a form label, a recipe path, an
API param) and adds `span`:

    bound = bounds.SEAT["max_tokens"]()
    if not bound.allows(value):
        raise RecipeError("seats[1].max_tokens", f"must be {bound.span}")

Bounds are built when asked for, not at import, because some follow site settings
(`MAX_OUTPUT_TOKENS`). Strategy settings have their own table in strategy_settings.py.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

# A seat's own time limits. Below 2 s a hosted model rarely sends its first token;
# above an hour a worker would hold a stream for longer than any answer needs.
MIN_TIMEOUT_S = 2
MAX_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Bound:
    label: str  # what a person calls the field: "Max tokens"
    low: float
    high: float
    whole: bool = False

    def allows(self, value) -> bool:
        kinds = (int,) if self.whole else (int, float)
        return (
            not isinstance(value, bool)
            and isinstance(value, kinds)
            and math.isfinite(value)
            and self.low <= value <= self.high
        )

    @property
    def span(self) -> str:
        """The range in words: "a whole number from 16 to 32,768"."""
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {_shown(self.low)} to {_shown(self.high)}"

    def refusal(self) -> str:
        """The message for a person who gave a value outside the range."""
        return f"{self.label} must be {self.span}."


def _shown(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


def max_tokens() -> Bound:
    return Bound("Max tokens", 16, settings.MAX_OUTPUT_TOKENS, whole=True)


def temperature() -> Bound:
    return Bound("Temperature", 0, 2)


def _timeout(label: str) -> Callable[[], Bound]:
    return lambda: Bound(label, MIN_TIMEOUT_S, MAX_TIMEOUT_S)


# A seat's numbers, by the Seat model's field names.
SEAT: dict[str, Callable[[], Bound]] = {
    "temperature": temperature,
    "max_tokens": max_tokens,
    "first_token_timeout_s": _timeout("First-token time limit (s)"),
    "idle_timeout_s": _timeout("Idle-gap time limit (s)"),
    "total_timeout_s": _timeout("Total time limit (s)"),
    "weight": lambda: Bound("Vote weight", 0, 100),
    "tier": lambda: Bound("Tier", 1, 2, whole=True),
    "max_tool_calls": lambda: Bound("Tool calls per answer", 1, 16, whole=True),
}


def deadline() -> Bound:
    return Bound("Deadline (s)", 1, 3600)


def quorum(seats: int) -> Bound:
    """At least one answer, at most one per seat."""
    return Bound("Quorum (answers)", 1, max(1, seats), whole=True)

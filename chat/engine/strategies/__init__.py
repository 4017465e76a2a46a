"""How a run answers, chosen per panel (panels/strategy_settings.py holds the settings).

Each strategy is one small module with `async def run(ctx, seats) -> Outcome`,
composing the stages (chat/engine/seats.py, judge.py, synthesis.py) and
recording every automatic decision it makes with `ctx.decide`, so a person can see
afterwards why the run went the way it did.
"""

from collections.abc import Awaitable, Callable

from chat.models import Answer

from ..answer import RunContext
from . import escalate, fusion, gate, route, verify, vote
from .common import Outcome

Strategy = Callable[[RunContext, list[Answer]], Awaitable[Outcome]]

STRATEGIES: dict[str, Strategy] = {
    "fusion": fusion.run,
    "vote": vote.run,
    "route": route.run,
    "gate": gate.run,
    "escalate": escalate.run,
    "verify": verify.run,
}


def strategy_for(config: dict) -> Strategy:
    name = (config.get("strategy") or {}).get("name", "fusion")
    return STRATEGIES.get(name, fusion.run)


__all__ = ["STRATEGIES", "Outcome", "strategy_for"]

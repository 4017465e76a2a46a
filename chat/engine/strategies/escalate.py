"""Escalate: seats are in tiers. Tier 1 answers; if its answers contradict each other
(the judge's analysis) or its vote share is below the threshold, tier 2 answers too
and the synthesis uses every answer; else tier 2 is never called. The run records
which tier ended it."""

from chat.models import Answer

from ..answer import RunContext
from ..seats import answered, seat_config, skip
from .common import CANCELLED, Outcome, answer_all, fuse, judge_answers, saved_estimate
from .vote import count


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    settings = ctx.run.config["strategy"]
    tier1 = [a for a in seats if (seat_config(ctx, a).get("tier") or 1) == 1]
    tier2 = [a for a in seats if a not in tier1]
    await answer_all(ctx, tier1)
    if ctx.cancelled:
        return CANCELLED
    usable = answered(tier1)
    judged = None
    detail: dict = {"trigger": settings["trigger"]}
    if not usable:
        escalate, why = True, "Tier 1 gave no answer"
    elif settings["trigger"] == "vote":
        tally = await count(ctx, usable)
        detail |= {"tally": tally.as_detail(), "threshold": settings["threshold"]}
        if tally.winner is None or tally.share < settings["threshold"]:
            escalate, why = (
                True,
                f"Tier 1's vote share {tally.share:.2f} is below " + (f"{settings['threshold']:g}"),
            )
        else:
            escalate = False
            why = f"Tier 1 agreed ({tally.score_line()} for {tally.winner.shown})"
    else:
        judged = await judge_answers(ctx, usable)
        verdict = judged[1]
        contradictions = (verdict.analysis or {}).get("contradictions") or []
        detail["contradictions"] = [c["point"] for c in contradictions]
        if verdict.failure or verdict.analysis is None:
            escalate, why = True, "The judge could not analyse tier 1"
        elif contradictions:
            escalate, why = True, f"Contradiction on {contradictions[0]['point']}"
        else:
            escalate, why = False, "Tier 1 agreed: no contradiction"
    if ctx.cancelled:
        return CANCELLED
    if escalate:
        await ctx.decide("escalate", f"{why} → asked tier 2", ended_at_tier=2, **detail)
        await answer_all(ctx, tier2)
        return await fuse(ctx, seats)
    saved = await saved_estimate(ctx, tier2)
    await skip(ctx, tier2, "Not needed: tier 1 agreed.")
    await ctx.decide(
        "escalate", f"{why}: tier 2 was not needed", ended_at_tier=1, **detail, **saved
    )
    return await fuse(ctx, tier1, judged=judged)

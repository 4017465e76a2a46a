"""Gate: Fusion A's confidence gating. The first seat answers alone and states how
sure it is; optionally the second seat answers too and agreement counts. At or
above the panel's threshold that answer is final and nothing else is called; below
it the rest of the panel answers and the panel's fallback (fusion or vote) ends the
run. Token log-probabilities would be a third signal; the providers here do not
return them yet, so they are not used."""

from chat.models import Answer, Run

from .. import prompts, rows, shortanswer, stages
from ..answer import RunContext
from ..db import in_db
from ..seats import SeatJob, run_seats, seat_config, skip
from .common import CANCELLED, Outcome, answer_all, fuse, saved_estimate
from .vote import finish_by_vote


def _agreement(first: Answer, second: Answer) -> float | None:
    a, b = shortanswer.extract(first.text), shortanswer.extract(second.text)
    if a is None or b is None:
        return None
    return 1.0 if shortanswer.normalise(a) == shortanswer.normalise(b) else 0.0


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    settings = ctx.run.config["strategy"]
    threshold = settings["threshold"]
    primary, rest = seats[0], seats[1:]
    checker = rest[0] if settings.get("cross_check") and rest else None
    jobs = [SeatJob(primary, seat_config(ctx, primary), system_note=prompts.GATE_NOTE)]
    if checker is not None:
        jobs.append(SeatJob(checker, seat_config(ctx, checker)))
    mark = stages.now()
    await run_seats(ctx, jobs)
    stages.timed(ctx, "panel", mark)
    if ctx.cancelled:
        return CANCELLED

    signals: dict[str, float] = {}
    stated, cleaned = prompts.stated_confidence(primary.text)
    if cleaned != primary.text:
        primary.text = cleaned
        await in_db(lambda: primary.save(update_fields=["text"]))
    answered = primary.status == Answer.Status.DONE and bool(primary.text.strip())
    if answered and stated is not None:
        signals["stated"] = stated
    if answered and checker is not None and checker.status == Answer.Status.DONE:
        agreement = _agreement(primary, checker)
        if agreement is not None:
            signals["agreement"] = agreement
    confidence = sum(signals.values()) / len(signals) if signals else None
    detail = {"confidence": confidence, "signals": signals, "threshold": threshold}

    remaining = [a for a in rest if a is not checker]
    if answered and confidence is not None and confidence >= threshold:
        saved = await saved_estimate(ctx, remaining)
        await skip(ctx, remaining, "Not needed: the first seat was confident.")
        await ctx.decide(
            "gate",
            f"Confident ({confidence:.2f}): the panel was not needed",
            **detail,
            **saved,
        )
        await rows.final_from(ctx, primary)
        return Outcome(Run.Status.DONE)

    if not answered:
        why = f"{primary.model_name} gave no answer"
    elif confidence is None:
        why = f"{primary.model_name} stated no confidence"
    else:
        why = f"Unsure ({confidence:.2f}, below {threshold:g})"
    await ctx.decide("gate", f"{why}: the rest of the panel answers", **detail)
    await answer_all(ctx, remaining)
    if ctx.cancelled:
        return CANCELLED
    if settings.get("fallback") == "vote":
        return await finish_by_vote(ctx, seats)
    return await fuse(ctx, seats)

"""What strategies share: the outcome they return, the fusion ending that several
of them finish with, and the estimate of what a call not made would have cost."""

from dataclasses import dataclass
from decimal import Decimal

from chat.models import Answer, Run
from panels.estimate import call_cost
from panels.models import CatalogModel

from .. import events, judge, rows, stages, synthesis, verification
from ..answer import RunContext
from ..db import in_db
from ..seats import SeatJob, answered, run_seats, seat_config


@dataclass
class Outcome:
    status: str
    reason: str = ""
    detail: str = ""


CANCELLED = Outcome(Run.Status.CANCELLED, Run.Failure.CANCELLED, "Stopped by the user.")


def all_failed(seats: list[Answer]) -> Outcome:
    tried = [a for a in seats if a.status != Answer.Status.SKIPPED]
    detail = "; ".join(f"{a.model_name}: {a.error or 'an empty answer'}" for a in tried)
    return Outcome(Run.Status.FAILED, Run.Failure.ALL_SEATS_FAILED, f"Every seat failed. {detail}")


def jobs(ctx: RunContext, answers: list[Answer], **options) -> list[SeatJob]:
    return [SeatJob(a, seat_config(ctx, a), **options) for a in answers]


async def answer_all(ctx: RunContext, answers: list[Answer]) -> None:
    """These seats answer the question, timed as the panel stage."""
    await stages.enter(ctx, Run.Status.PANEL)
    mark = stages.now()
    await run_seats(ctx, jobs(ctx, answers))
    stages.timed(ctx, "panel", mark)


async def judge_answers(ctx: RunContext, answers: list[Answer]) -> tuple[list, judge.Verdict]:
    """The judging stage over these answers: the judge asked (judge.py), the
    analysis saved and shown."""
    run = ctx.run
    labelled = judge.label_answers(run, answers)
    mark = stages.now()
    # Entered with the judge's first call: one trip for both.
    verdict = await judge.ask_judge(ctx, run.message.content, labelled, Run.Status.JUDGING)
    await stages.enter(ctx, Run.Status.JUDGING)  # only if no call was opened
    stages.timed(ctx, "judging", mark)
    analysis = verdict.analysis
    run.analysis = (
        None
        if analysis is None
        else {**analysis, "labels": {label: answer_id for label, answer_id, _ in labelled}}
    )
    run.analysis_raw, run.analysis_structured = verdict.raw, analysis is not None
    await in_db(lambda: run.save(update_fields=["analysis", "analysis_raw", "analysis_structured"]))
    await ctx.announce(events.analysis_ready(run))
    return labelled, verdict


async def fuse(
    ctx: RunContext,
    answers: list[Answer],
    judged: tuple[list, judge.Verdict] | None = None,
    parts: list[str] | None = None,
) -> Outcome:
    """Fusion's ending over `answers`: the judge (unless already `judged`), then the
    synthesis; the panel's best answer when the judge gave nothing usable."""
    if ctx.cancelled:
        return CANCELLED
    usable = answered(answers)
    if not usable:
        return all_failed(answers)
    if not ctx.run.config.get("judge"):
        return Outcome(Run.Status.DONE)  # a single model: its answer is final
    if judged is None and (passed := await _kept_as_written(ctx, usable)):
        return passed
    labelled, verdict = judged or await judge_answers(ctx, usable)
    if ctx.cancelled:
        return CANCELLED
    if verdict.failure:
        # Nothing to fuse with (and the synthesizer is often the same model): the
        # panel's best answer stands — the first seat that answered, in panel order.
        best = usable[0]
        await rows.final_from(ctx, best)
        detail = (
            f"{verdict.detail.rstrip('.')}. The answer shown is {best.model_name}'s, not fused."
        )
        return Outcome(Run.Status.DONE, verdict.failure, detail)
    mark = stages.now()
    question = ctx.run.message.content
    # Entered with the synthesizer's call: one trip for both.
    final = await synthesis.synthesize(
        ctx, question, labelled, verdict, parts, Run.Status.SYNTHESIZING
    )
    stages.timed(ctx, "synthesizing", mark)
    if final.status == Answer.Status.DONE:
        return Outcome(Run.Status.DONE)
    if ctx.cancelled:
        return CANCELLED
    return Outcome(
        Run.Status.FAILED,
        Run.Failure.SYNTHESIS_FAILED,
        f"No synthesis: {final.error} The panel's answers are shown above.",
    )


async def _kept_as_written(ctx: RunContext, usable: list[Answer]) -> Outcome | None:
    """A draft whose code passes every test the question states is the final answer
    as written (issue 24: a synthesizer rewrote working code); no judge, no synthesis."""
    budget = verification.SandboxBudget(len(usable))
    draft, detail = await verification.draft_that_passed(ctx.run.message.content, usable, budget)
    if draft is None:
        if detail:
            await ctx.decide("check", "No draft passed every test in the question", **detail)
        return None
    await ctx.decide(
        "check",
        f"{draft.model_name}'s draft passed every test in the question: kept as written",
        **detail,
    )
    await rows.final_from(ctx, draft)
    return Outcome(Run.Status.DONE)


def _estimate(refs: list[dict], question: str) -> Decimal | None:
    models = CatalogModel.objects.in_bulk([r["catalog_id"] for r in refs if r])
    tokens_in = len(question) // 4 + 150
    total = Decimal(0)
    for ref in refs:
        cost = call_cost(models.get(ref["catalog_id"]) if ref else None, tokens_in, 300)
        if cost is None:
            return None
        total += cost
    return total


async def saved_estimate(ctx: RunContext, skipped: list[Answer]) -> dict:
    """What the calls not made would have cost (catalog prices, ~300 tokens each),
    and the time of the slowest call that was made, as a stand-in for theirs."""
    refs = [seat_config(ctx, a)["model"] for a in skipped]
    refs = [r for r in refs if r]
    cost = await in_db(_estimate, refs, ctx.run.message.content)
    return {
        "calls_saved": len(skipped),
        "cost_saved_estimate": None if cost is None else str(cost.quantize(Decimal("0.000001"))),
    }

"""A run's stages: entering one (saved, and shown in the conversation), timing it, and the
run's end. What each stage does has a module of its own: seats.py (the panel
answering, with quorum and deadline), judge.py, synthesis.py; the strategies
(strategies/) compose them.
"""

import asyncio

from django.utils import timezone

from chat.models import Run

from . import events
from .answer import RunContext
from .db import in_db


def _set_status(run: Run, status: str) -> None:
    run.status = status
    run.save(update_fields=["status"])


async def enter(ctx: RunContext, status: str) -> None:
    """The run moves to a new stage: saved, and shown in the conversation."""
    if ctx.run.status == status:
        return
    await in_db(_set_status, ctx.run, status)
    await ctx.announce(events.run_status(ctx.run))


def timed(ctx: RunContext, stage: str, since: float) -> None:
    ctx.run.stage_ms[stage] = ctx.run.stage_ms.get(stage, 0) + int(
        (asyncio.get_running_loop().time() - since) * 1000
    )


def now() -> float:
    return asyncio.get_running_loop().time()


def _finish(run: Run, status: str, reason: str = "", detail: str = "") -> None:
    answers = list(run.answers.all())
    run.cost_usd, run.solo_cost_usd = events.cost_of(answers), events.solo_cost_of(answers)
    run.status, run.failure_reason, run.failure_detail = status, reason, detail
    run.finished_at = timezone.now()
    started = run.started_at or run.finished_at  # set when the run was taken
    run.stage_ms["total"] = int((run.finished_at - started).total_seconds() * 1000)
    run.save()
    run.message.conversation.save(update_fields=["updated_at"])


async def end(ctx: RunContext, status: str, reason: str = "", detail: str = "") -> None:
    await in_db(_finish, ctx.run, status, reason, detail)
    await ctx.announce(events.run_done(ctx.run))

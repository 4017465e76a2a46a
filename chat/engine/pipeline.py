"""A run from queued to done: take it, run its panel's strategy, close it.

The strategies (chat/engine/strategies/) compose the stages (chat/engine/stages.py):
fusion — every seat, the judge, the synthesis — is the default; vote, route, gate
and escalate are Fusion A's. A single model is a panel of one seat with no judge.
Every stage streams over the channel layer (chat/engine/answer.py).
"""

import asyncio
import contextlib
import logging

from django.utils import timezone

from chat.models import Answer, Run

from . import events, json_modes, runstate, stages
from .answer import RunContext
from .db import database_thread, in_db
from .strategies import strategy_for
from .strategies.common import Outcome

log = logging.getLogger(__name__)

# Kept importable where they always were.
Verdict = stages.Verdict
judge_budget = stages.judge_budget


def _start(run_id: int) -> tuple[Run, list[Answer]] | None:
    # One conditional update: a run stopped (or taken by another worker) while it
    # waited in the queue is never started.
    taken = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
        status=Run.Status.PANEL, started_at=timezone.now()
    )
    if not taken:
        return None
    run = Run.objects.select_related("message__conversation__owner").get(pk=run_id)
    return run, list(run.answers.filter(role=Answer.Role.SEAT).order_by("position"))


async def execute(run_id: int) -> None:
    async with database_thread():
        await _execute_run(run_id)


async def _execute_run(run_id: int) -> None:
    loaded = await in_db(_start, run_id)
    if loaded is None:
        log.info("run %s is not queued; skipping", run_id)
        return
    run, seats = loaded
    ctx = RunContext(run)
    watcher = asyncio.create_task(runstate.watch(ctx.redis, run.pk, ctx.cancel_all))
    try:
        await ctx.announce(events.run_started(run, seats))
        outcome = await strategy_for(run.config)(ctx, seats)
        if run.config.get("response_format"):  # an API caller's JSON mode
            checked = await in_db(
                json_modes.checked, run, outcome.status, outcome.reason, outcome.detail
            )
            outcome = Outcome(*checked)
        if ctx.over_budget and outcome.status != Run.Status.DONE:
            outcome = Outcome(Run.Status.FAILED, Run.Failure.BUDGET, ctx.over_budget)
        await stages.end(ctx, outcome.status, outcome.reason, outcome.detail)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await ctx.aclose()

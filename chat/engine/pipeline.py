"""A run from queued to done: take it, run its panel's strategy, close it.

The strategies (chat/engine/strategies/) compose the stages, each a module of its
own (seats.py, judge.py, synthesis.py; stages.py moves the run from one to the
next): fusion — every seat, the judge, the synthesis — is the default; vote, route,
gate and escalate are Fusion A's. A single model is a panel of one seat with no judge.
Every call streams its text to the conversation's Redis Stream (chat/engine/live.py).
"""

import asyncio
import contextlib
import functools
import logging

from django.utils import timezone

from chat.models import Answer, Run

from . import client_tools, events, fusion_tool, json_modes, runstate, seats, stages
from .answer import RunContext
from .db import database_thread, in_db
from .seat_input import server_tools_of
from .strategies import strategy_for
from .strategies.common import Outcome

log = logging.getLogger(__name__)


def _start(run_id: int, taken: bool = False) -> tuple[Run, list[Answer], dict] | None:
    # One conditional update: a run stopped (or taken by another worker) while it
    # waited in the queue is never started. A run `taken` when it was created (one
    # started in the web process: runs.start_run) is only loaded.
    if not taken:
        taken = bool(
            Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
                status=Run.Status.PANEL, started_at=timezone.now()
            )
        )
        if not taken:
            return None
    run = Run.objects.select_related("message__conversation__owner").get(pk=run_id)
    if run.status != Run.Status.PANEL:
        return None
    answers = list(run.answers.filter(role=Answer.Role.SEAT).order_by("position"))
    return run, answers, seats.prepared_at_start(run, answers)


async def execute(run_id: int, taken: bool = False) -> None:
    async with database_thread():
        await _execute_run(run_id, taken)


async def _execute_run(run_id: int, taken: bool = False) -> None:
    loaded = await in_db(_start, run_id, taken)
    if loaded is None:
        log.info("run %s is not queued; skipping", run_id)
        return
    run, seat_answers, prepared = loaded
    ctx = RunContext(run)
    ctx.prepared = prepared
    if (server := server_tools_of(run.config)) and "fusion" in server["names"]:
        ctx.convene = functools.partial(fusion_tool.convene, ctx)
    watcher = asyncio.create_task(runstate.watch(ctx.redis, run.pk, ctx.cancel_all))
    try:
        await ctx.announce(events.run_started(run, seat_answers))
        outcome = await strategy_for(run.config)(ctx, seat_answers)
        if ctx.convene is not None and outcome.status == Run.Status.DONE:
            await fusion_tool.answered_alone(ctx)  # a card for "no" too, unless it consulted
        if run.config.get("response_format"):  # an API caller's JSON mode
            checked = await in_db(
                json_modes.checked, run, outcome.status, outcome.reason, outcome.detail
            )
            outcome = Outcome(*checked)
        if client_tools.required_call(run.config):  # the caller's tool_choice
            checked = await in_db(
                client_tools.checked, run, outcome.status, outcome.reason, outcome.detail
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

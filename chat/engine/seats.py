"""The seats answering: every seat's call prepared at once, the seats called side
by side, and the quorum and deadline rule that decides when to stop waiting for
the rest (a seat still running then is cut off and marked late). Also the seats a
strategy did not need (skipped, and said so) and which seats answered."""

import asyncio
import math
from dataclasses import dataclass

from django.conf import settings

from chat.models import Answer, Run
from panels.calls import CallLimits, Target
from panels.models import CatalogModel
from panels.providers import ChatRequest, ProviderError

from . import client_tools, events, json_modes
from .answer import RunContext, run_answer
from .context import earlier_turns
from .db import in_db
from .seat_input import (
    is_solo,
    seat_choices,
    seat_max_tokens,
    seat_messages,
    seat_tool_calls,
    seat_tool_names,
    server_tools_of,
)
from .targets import targets_for, usable_models
from .tool_loop import ToolUse
from .tools.base import ToolEnv

SeatCall = tuple[list[Target], ChatRequest, CallLimits]


@dataclass
class SeatJob:
    """One seat answering: its answer row, its seat settings, and optionally a part
    of the question (a router's sub-question) or a note added to its system prompt."""

    answer: Answer
    seat: dict
    question: str | None = None
    system_note: str = ""


def seat_tools(ctx: RunContext, seat: dict) -> ToolUse | None:
    """The tools this seat may call: the panel's, if the seat uses tools and its
    model can call them (a model that cannot is never sent any); or, for one model
    alone, the server tools an API request gave it, the panel lent to `fusion`."""
    excluded = {*settings.SEARCH_EXCLUDED_DOMAINS, *ctx.run.config.get("excluded_domains", [])}
    env = ToolEnv(http=ctx.http, redis=ctx.redis, excluded_domains=tuple(sorted(excluded)))
    if server := server_tools_of(ctx.run.config):
        env.convene = ctx.convene
        return ToolUse(server["names"], server["max_tool_calls"], env, server["tool_choice"])
    names = seat_tool_names(ctx.run.config, seat)
    if not names:
        return None
    return ToolUse(names, seat_tool_calls(seat), env)


def _seat_calls(run: Run, jobs: list[SeatJob]) -> list[SeatCall | ProviderError]:
    """Every seat's call, prepared in one go (one database round trip)."""
    prepared: list[SeatCall | ProviderError] = []
    # Through the API the caller sends the whole conversation; in the chatroom it
    # is the conversation's earlier turns.
    turns = None if "conversation" in run.config else earlier_turns(run.message)
    refs = [ref for job in jobs for ref in (job.seat["model"], *job.seat.get("fallbacks", []))]
    usable = usable_models(refs, run.conversation.owner)
    for job in jobs:
        try:
            prepared.append(_seat_call(run, job, turns, usable))
        except ProviderError as error:
            prepared.append(error)
    return prepared


def _seat_call(
    run: Run,
    job: SeatJob,
    turns: list[tuple[str, str]] | None,
    usable: dict[int, CatalogModel],
) -> SeatCall:
    seat, config = job.seat, run.config
    refs = [seat["model"], *seat.get("fallbacks", [])]
    targets = targets_for(refs, run.conversation.owner, usable)
    chosen = seat_choices(config)
    max_tokens = seat_max_tokens(config, seat)
    question = run.message.content
    context = targets[0].context_length
    messages = seat_messages(config, seat, question, turns, context, job.system_note, job.question)
    solo = is_solo(config)
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=max_tokens,
        temperature=chosen.get("temperature", seat.get("temperature")),
        depth=run.config.get("depth", 0),
        stop=chosen.get("stop", ()),
        seed=chosen.get("seed"),
        response_format=json_modes.for_server(config.get("response_format"), seat["model"]),
        **(client_tools.request_options(config) if solo else {}),
    )
    return targets, request, CallLimits.from_settings(**(seat.get("limits") or {}))


def prepared_at_start(run: Run, answers: list[Answer]) -> dict[int, SeatCall | ProviderError]:
    """A fusion run's seats' calls, prepared in the trip that takes the run (by answer
    id): its seats are called at once, so a trip of their own would only stand between
    the run's start and the first request. Other strategies prepare what they call."""
    if (run.config.get("strategy") or {}).get("name", "fusion") != "fusion":
        return {}
    jobs = [SeatJob(a, run.config["seats"][a.position]) for a in answers]
    return {job.answer.pk: call for job, call in zip(jobs, _seat_calls(run, jobs), strict=True)}


async def run_seats(ctx: RunContext, jobs: list[SeatJob]) -> None:
    """These seats at once; then the quorum and deadline rule decides when to stop."""
    tasks: dict[asyncio.Task, Answer] = {}
    plain = all(job.question is None and not job.system_note for job in jobs)
    if plain and jobs and all(job.answer.pk in ctx.prepared for job in jobs):
        prepared = [ctx.prepared.pop(job.answer.pk) for job in jobs]
    else:
        prepared = await in_db(_seat_calls, ctx.run, jobs)
    for job, call in zip(jobs, prepared, strict=True):
        answer = job.answer
        if isinstance(call, ProviderError):
            answer.status, answer.error = Answer.Status.FAILED, call.message
            answer.error_kind = str(call.kind)
            await in_db(answer.save)
            await ctx.announce(events.answer_ended(answer, 0))
            continue
        targets, request, limits = call
        tools = seat_tools(ctx, job.seat)
        task = asyncio.create_task(run_answer(ctx, answer, targets, request, limits, tools))
        tasks[task] = answer
    if tasks:
        await _quorum(ctx, tasks)


async def _quorum(ctx: RunContext, tasks: dict[asyncio.Task, Answer]) -> None:
    """Wait until every seat ended, or until `min_answers` answered and the deadline
    passed; then cut the stragglers off and mark them late."""
    config = ctx.run.config
    loop = asyncio.get_running_loop()
    wanted = min(config.get("min_answers") or len(tasks), len(tasks))
    deadline = loop.time() + (config.get("deadline_s") or math.inf)
    pending = set(tasks)
    while pending:
        answered = sum(1 for a in tasks.values() if a.status == Answer.Status.DONE)
        timeout = None
        if answered >= wanted:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
        _, pending = await asyncio.wait(
            pending,
            timeout=None if timeout == math.inf else timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    for task in pending:
        answer = tasks[task]
        ctx.late.add(answer.pk)
        if call := ctx.running.get(answer.pk):
            call.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def answered(answers: list[Answer]) -> list[Answer]:
    """Answers with something in them: text, or calls of the caller's tools."""
    return [
        a
        for a in answers
        if a.status == Answer.Status.DONE and (a.text.strip() or a.client_tool_calls)
    ]


def _mark_skipped(answers: list[Answer], reason: str) -> None:
    for answer in answers:
        answer.status, answer.error = Answer.Status.SKIPPED, reason
        answer.save(update_fields=["status", "error"])


async def skip(ctx: RunContext, answers: list[Answer], reason: str) -> None:
    """Seats the strategy did not need: never called, and said so."""
    if not answers:
        return
    await in_db(_mark_skipped, answers, reason)
    for answer in answers:
        await ctx.announce(events.answer_ended(answer, 0))


def seat_config(ctx: RunContext, answer: Answer) -> dict:
    return ctx.run.config["seats"][answer.position]

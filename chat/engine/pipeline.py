"""The fusion pipeline: one run = the panel's seats in parallel → the judge's
analysis → the synthesizer's answer. A single model is a panel of one seat with
no judge. Every stage streams over the channel layer (chat/engine/answer.py).
"""

import asyncio
import contextlib
import logging
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from chat.models import Answer, Run
from panels.calls import CallLimits, Target
from panels.crypto import UnreadableSecret
from panels.models import CatalogModel
from panels.providers import ChatMessage, ChatRequest, ErrorKind, ProviderError

from . import events, prompts, runstate
from .answer import RunContext, run_answer
from .context import earlier_turns, fit_given_messages, fit_messages
from .db import database_thread, in_db

log = logging.getLogger(__name__)


def target_for(model: CatalogModel) -> Target:
    return Target(
        provider_id=model.provider_id,
        model_id=model.model_id,
        display_name=model.display_name,
        endpoint=model.provider.endpoint(),
        prices=model.price_per_token(),
        context_length=model.context_length,
    )


def _targets(refs: list[dict | None], owner) -> list[Target]:
    """Callable targets for model references of a run's frozen configuration, among
    the models the run's owner may use: a shared panel never spends its author's
    own keys."""
    ids = [ref["catalog_id"] for ref in refs if ref]
    models = CatalogModel.objects.usable_by(owner).select_related("provider").in_bulk(ids)
    targets = []
    for catalog_id in ids:
        model = models.get(catalog_id)
        if model is None or not model.is_active or not model.provider.is_active:
            continue
        try:
            targets.append(target_for(model))
        except UnreadableSecret as exc:
            raise ProviderError(str(exc), retryable=False, kind=ErrorKind.AUTH) from None
    if not targets:
        raise ProviderError(
            "This model is not available to you: removed, switched off, or behind someone "
            "else's own provider key.",
            retryable=False,
            kind=ErrorKind.UNAVAILABLE,
        )
    return targets


def _seat_calls(run: Run) -> list[tuple[list[Target], ChatRequest, CallLimits] | ProviderError]:
    """Every seat's call, prepared in one go (one database round trip per run)."""
    prepared: list[tuple[list[Target], ChatRequest, CallLimits] | ProviderError] = []
    # Through the API the caller sends the whole conversation; in the chatroom it
    # is the room's earlier turns.
    turns = None if "conversation" in run.config else earlier_turns(run.message)
    for seat in run.config["seats"]:
        try:
            prepared.append(_seat_call(run, seat, turns))
        except ProviderError as error:
            prepared.append(error)
    return prepared


def _seat_call(
    run: Run, seat: dict, turns: list[tuple[str, str]] | None
) -> tuple[list[Target], ChatRequest, CallLimits]:
    owner = run.message.conversation.owner
    targets = _targets([seat["model"], *seat.get("fallbacks", [])], owner)
    max_tokens = seat.get("max_tokens") or settings.DEFAULT_MAX_TOKENS
    context = targets[0].context_length
    if turns is None:
        messages = fit_given_messages(
            run.config["conversation"], context, max_tokens, seat.get("system_prompt")
        )
    else:
        messages = fit_messages(run.message, turns, context, max_tokens, seat.get("system_prompt"))
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=max_tokens,
        temperature=seat.get("temperature"),
        depth=run.config.get("depth", 0),
    )
    return targets, request, CallLimits.from_settings(**(seat.get("limits") or {}))


def _json_format(ref: dict, known_labels: list[str], drafts: bool) -> dict | None:
    """Ask for JSON the way the judge's server understands: llama.cpp constrains its
    output with the schema itself; OpenAI-compatible APIs take json_object."""
    if ref.get("local"):
        return {"type": "json_object", "schema": prompts.analysis_schema(known_labels, drafts)}
    return {"type": "json_object"}


# --- database steps (run in a thread through in_db) ------------------------------


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


def _set_status(run: Run, status: str) -> None:
    run.status = status
    run.save(update_fields=["status"])


def _new_answer(run: Run, role: str, position: int, ref: dict, prompt) -> Answer:
    return Answer.objects.create(
        run=run,
        role=role,
        position=position,
        model_key=ref["model_id"],
        model_name=ref["name"],
        provider_name=ref["provider"],
        prompt=[{"role": m.role, "content": m.content} for m in prompt],
    )


def _finish(run: Run, status: str, reason: str = "", detail: str = "") -> None:
    answers = list(run.answers.all())
    run.cost_usd, run.solo_cost_usd = events.cost_of(answers), events.solo_cost_of(answers)
    run.status, run.failure_reason, run.failure_detail = status, reason, detail
    run.finished_at = timezone.now()
    started = run.started_at or run.finished_at  # set when the run was taken
    run.stage_ms["total"] = int((run.finished_at - started).total_seconds() * 1000)
    run.save()
    run.message.conversation.save(update_fields=["updated_at"])


# --- stages ---------------------------------------------------------------------


async def _panel(ctx: RunContext, seats: list[Answer]) -> None:
    """All seats at once; then the quorum and deadline rule decides when to stop."""
    config = ctx.run.config
    tasks: dict[asyncio.Task, Answer] = {}
    prepared = await in_db(_seat_calls, ctx.run)
    for answer, call in zip(seats, prepared, strict=True):
        if isinstance(call, ProviderError):
            answer.status, answer.error = Answer.Status.FAILED, call.message
            answer.error_kind = str(call.kind)
            await in_db(answer.save)
            continue
        targets, request, limits = call
        task = asyncio.create_task(run_answer(ctx, answer, targets, request, limits))
        tasks[task] = answer
    if tasks:
        await _quorum(ctx, tasks, config)


async def _quorum(ctx: RunContext, tasks: dict[asyncio.Task, Answer], config: dict) -> None:
    """Wait until every seat ended, or until `min_answers` answered and the deadline
    passed; then cut the stragglers off and mark them late."""
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


@dataclass
class Verdict:
    """What the judge stage produced: a validated analysis, or the raw text of a
    reply that never became valid JSON, or a failure with its typed reason."""

    analysis: dict | None = None
    raw: str = ""
    failure: str = ""  # a Run.Failure when the judge gave nothing usable
    detail: str = ""


def judge_budget(answers: int, drafts: bool) -> int:
    """Tokens for the judge: a base plus so much per answer judged (and room for a
    draft), never more than JUDGE_MAX_TOKENS. A flat budget let a looping local judge
    decode for minutes."""
    wanted = 200 + settings.JUDGE_TOKENS_PER_ANSWER * answers
    if drafts:
        wanted += settings.SYNTHESIZER_MAX_TOKENS
    return min(settings.JUDGE_MAX_TOKENS, wanted)


async def _judge(ctx: RunContext, question: str, labelled, first_position: int) -> Verdict:
    """The analysis: structured JSON, with one repair attempt when the reply ended
    normally but was not valid; a reply cut off (by its budget, its deadline or a loop)
    is not a format error and is not repaired."""
    config = ctx.run.config
    ref, drafts = config["judge"], config.get("judge_drafts", False)
    messages = prompts.judge_messages(question, labelled, drafts)
    known = [label for label, _, _ in labelled]
    max_tokens = judge_budget(len(labelled), drafts)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.JUDGE_DEADLINE_S
    verdict = Verdict()
    for attempt in range(2):
        answer = await in_db(
            _new_answer, ctx.run, Answer.Role.JUDGE, first_position + attempt, ref, messages
        )
        await ctx.announce(events.answer_created(answer))
        try:
            targets = await in_db(_targets, [ref], ctx.owner)
        except ProviderError as error:
            answer.status, answer.error = Answer.Status.FAILED, error.message
            await in_db(answer.save)
            return Verdict(
                failure=Run.Failure.JUDGE_UPSTREAM_ERROR,
                detail=f"The judge could not run: {error.message}",
            )
        request = ChatRequest(
            model=targets[0].model_id,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0.0,
            response_format=_json_format(ref, known, drafts),
            depth=config.get("depth", 0),
        )
        limits = CallLimits.from_settings(total_s=max(1.0, deadline - loop.time()))
        result = await run_answer(ctx, answer, targets, request, limits)
        if not result.ok:
            kind = result.error.kind if result.error else None
            runaway = kind in (ErrorKind.REPETITION, ErrorKind.TIMEOUT)
            return Verdict(
                raw=result.text,
                failure=Run.Failure.JUDGE_RUNAWAY if runaway else Run.Failure.JUDGE_UPSTREAM_ERROR,
                detail=f"The judge failed: {answer.error}",
            )
        if not result.text.strip():
            return Verdict(failure=Run.Failure.JUDGE_EMPTY, detail="The judge's reply was empty.")
        verdict.raw = result.text
        try:
            verdict.analysis = prompts.parse_analysis(result.text, known, drafts)
            return verdict
        except prompts.AnalysisError as problem:
            if result.finish_reason == "length":
                return Verdict(
                    raw=result.text,
                    failure=Run.Failure.JUDGE_RUNAWAY,
                    detail=f"The judge's reply was cut off at its budget of {max_tokens} "
                    "tokens before it was complete.",
                )
            if deadline - loop.time() < 1:
                break  # no time left for a repair
            repair = prompts.REPAIR_PROMPT.format(problem=problem)
            messages = (
                *messages,
                ChatMessage("assistant", result.text),
                ChatMessage("user", repair),
            )
    return verdict  # text, but never valid JSON: the synthesizer reads it as written


async def _synthesize(ctx: RunContext, question: str, labelled, analysis, raw, position):
    config = ctx.run.config
    if config.get("judge_drafts") and analysis and analysis.get("draft"):
        # The judge already wrote the answer: no second call.
        return await in_db(_drafted_answer, ctx.run, config["judge"], analysis["draft"], position)
    refs = [config["synthesizer"], config.get("synthesizer_fallback")]
    messages = prompts.synthesizer_messages(
        question, labelled, prompts.analysis_as_text(analysis, raw)
    )
    answer = await in_db(_new_answer, ctx.run, Answer.Role.SYNTHESIZER, position, refs[0], messages)
    await ctx.announce(events.answer_created(answer))
    try:
        targets = await in_db(_targets, refs, ctx.owner)
    except ProviderError as error:
        answer.status, answer.error = Answer.Status.FAILED, error.message
        await in_db(answer.save)
        return answer
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=config.get("synthesizer_max_tokens") or settings.SYNTHESIZER_MAX_TOKENS,
        temperature=config.get("synthesizer_temperature"),
        depth=config.get("depth", 0),
    )
    limits = CallLimits.from_settings(total_s=settings.SYNTHESIZER_DEADLINE_S)
    await run_answer(ctx, answer, targets, request, limits)
    return answer


def _drafted_answer(run: Run, ref: dict, draft: str, position: int) -> Answer:
    return Answer.objects.create(
        run=run,
        role=Answer.Role.SYNTHESIZER,
        position=position,
        model_key=ref["model_id"],
        model_name=ref["name"],
        provider_name=ref["provider"],
        text=prompts.clean_final(draft),
        status=Answer.Status.DONE,
        cost_usd=Decimal(0),
        cost_source="in judge",
    )


def _unfused_answer(run: Run, best: Answer, position: int) -> Answer:
    """The final answer when the judge gave nothing to fuse with: the panel's best
    seat answer as it was written (no call, so no cost of its own)."""
    return Answer.objects.create(
        run=run,
        role=Answer.Role.SYNTHESIZER,
        position=position,
        catalog_model_id=best.catalog_model_id,
        model_key=best.model_key,
        model_name=best.model_name,
        provider_name=best.provider_name,
        text=best.text,
        status=Answer.Status.DONE,
        cost_usd=Decimal(0),
        cost_source="seat answer, unfused",
    )


# --- the run ----------------------------------------------------------------------


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
        await _execute(ctx, seats)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await ctx.aclose()


async def _stage(ctx: RunContext, status: str) -> None:
    await in_db(_set_status, ctx.run, status)
    await ctx.announce(events.run_status(ctx.run))


async def _end(ctx: RunContext, status: str, reason: str = "", detail: str = "") -> None:
    run = ctx.run
    await in_db(_finish, run, status, reason, detail)
    await ctx.announce(events.run_done(run))


async def _execute(ctx: RunContext, seats: list[Answer]) -> None:
    run, loop = ctx.run, asyncio.get_running_loop()
    started = loop.time()
    await ctx.announce(events.run_started(run, seats))
    await _panel(ctx, seats)
    run.stage_ms["panel"] = int((loop.time() - started) * 1000)
    if ctx.cancelled:
        return await _end(ctx, Run.Status.CANCELLED, Run.Failure.CANCELLED, "Stopped by the user.")
    answered = [a for a in seats if a.status == Answer.Status.DONE and a.text.strip()]
    if not answered:
        detail = "; ".join(f"{a.model_name}: {a.error or 'an empty answer'}" for a in seats)
        return await _end(
            ctx, Run.Status.FAILED, Run.Failure.ALL_SEATS_FAILED, f"Every seat failed. {detail}"
        )
    if not run.config.get("judge"):
        return await _end(ctx, Run.Status.DONE)  # a single model: its answer is final

    question = run.message.content
    labelled = prompts.anonymise([(a.pk, a.text) for a in answered], random.Random(run.pk))
    await _stage(ctx, Run.Status.JUDGING)
    mark = loop.time()
    verdict = await _judge(ctx, question, labelled, len(seats))
    analysis, raw = verdict.analysis, verdict.raw
    run.stage_ms["judging"] = int((loop.time() - mark) * 1000)
    run.analysis = (
        None
        if analysis is None
        else {**analysis, "labels": {label: answer_id for label, answer_id, _ in labelled}}
    )
    run.analysis_raw, run.analysis_structured = raw, analysis is not None
    await in_db(lambda: run.save(update_fields=["analysis", "analysis_raw", "analysis_structured"]))
    await ctx.announce(events.analysis_ready(run))
    if ctx.cancelled:
        return await _end(ctx, Run.Status.CANCELLED, Run.Failure.CANCELLED, "Stopped by the user.")
    if verdict.failure:
        # Nothing to fuse with (and the synthesizer is often the same model): the
        # panel's best answer stands — the first seat that answered, in panel order.
        best = answered[0]
        await in_db(_unfused_answer, run, best, len(seats) + 2)
        detail = (
            f"{verdict.detail.rstrip('.')}. The answer shown is {best.model_name}'s, not fused."
        )
        return await _end(ctx, Run.Status.DONE, verdict.failure, detail)

    await _stage(ctx, Run.Status.SYNTHESIZING)
    mark = loop.time()
    final = await _synthesize(ctx, question, labelled, analysis, raw, len(seats) + 2)
    run.stage_ms["synthesizing"] = int((loop.time() - mark) * 1000)
    if final.status == Answer.Status.DONE:
        return await _end(ctx, Run.Status.DONE)
    if ctx.cancelled:
        return await _end(ctx, Run.Status.CANCELLED, Run.Failure.CANCELLED, "Stopped by the user.")
    await _end(
        ctx,
        Run.Status.FAILED,
        Run.Failure.SYNTHESIS_FAILED,
        f"No synthesis: {final.error} The panel's answers are shown above.",
    )

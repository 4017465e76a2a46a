"""The stages every strategy composes: seats answering (with quorum and deadline),
the judge's analysis, the synthesis, and small constrained JSON calls (a router, a
vote's extraction or tie-break). Each call is an Answer row, so it is streamed,
costed and drawn on the trace like any other.
"""

import asyncio
import json
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

from . import client_tools, events, json_modes, prompts
from .answer import RunContext, ToolUse, run_answer
from .context import earlier_turns, fit_given_messages, fit_messages
from .db import in_db
from .tools import registry
from .tools.base import ToolEnv

SeatCall = tuple[list[Target], ChatRequest, CallLimits]

# --- targets -------------------------------------------------------------------------


def target_for(model: CatalogModel) -> Target:
    return Target(
        provider_id=model.provider_id,
        model_id=model.model_id,
        display_name=model.display_name,
        endpoint=model.provider.endpoint(),
        prices=model.price_per_token(),
        context_length=model.context_length,
        site_wide=model.provider.is_site_wide,
    )


def usable_models(refs: list[dict | None], owner) -> dict[int, CatalogModel]:
    """The models of these references that the run's owner may use, in one query."""
    ids = [ref["catalog_id"] for ref in refs if ref]
    return CatalogModel.objects.usable_by(owner).select_related("provider").in_bulk(ids)


def targets_for(
    refs: list[dict | None], owner, usable: dict[int, CatalogModel] | None = None
) -> list[Target]:
    """Callable targets for model references of a run's frozen configuration, among
    the models the run's owner may use: a shared panel never spends its author's
    own keys. `usable` is what usable_models read already for several calls."""
    ids = [ref["catalog_id"] for ref in refs if ref]
    models = usable_models(refs, owner) if usable is None else usable
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


# --- seats -----------------------------------------------------------------------------


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
    model can call them (a model that cannot is never sent any)."""
    names = [n for n in ctx.run.config.get("tools", []) if n in registry.TOOLS]
    model = seat.get("model") or {}
    if client_tools.of(ctx.run.config) and not ctx.run.config.get("judge"):
        return None  # one model alone with the caller's tools: its calls are the caller's
    if not names or not seat.get("use_tools", True) or not model.get("supports_tools"):
        return None
    excluded = {*settings.SEARCH_EXCLUDED_DOMAINS, *ctx.run.config.get("excluded_domains", [])}
    env = ToolEnv(http=ctx.http, redis=ctx.redis, excluded_domains=tuple(sorted(excluded)))
    return ToolUse(names, max(1, min(16, int(seat.get("max_tool_calls") or 8))), env)


def _seat_calls(run: Run, jobs: list[SeatJob]) -> list[SeatCall | ProviderError]:
    """Every seat's call, prepared in one go (one database round trip)."""
    prepared: list[SeatCall | ProviderError] = []
    # Through the API the caller sends the whole conversation; in the chatroom it
    # is the room's earlier turns.
    turns = None if "conversation" in run.config else earlier_turns(run.message)
    refs = [ref for job in jobs for ref in (job.seat["model"], *job.seat.get("fallbacks", []))]
    usable = usable_models(refs, run.conversation.owner)
    for job in jobs:
        try:
            prepared.append(_seat_call(run, job, turns, usable))
        except ProviderError as error:
            prepared.append(error)
    return prepared


def final_choices(config: dict) -> dict:
    """What an API caller chose for the call that writes the final answer (kept as
    `synthesizer_*` in the run's configuration): its ChatRequest fields, or {}."""
    chosen = {
        "max_tokens": config.get("synthesizer_max_tokens"),
        "temperature": config.get("synthesizer_temperature"),
        "stop": tuple(config.get("synthesizer_stop") or ()),
        "seed": config.get("synthesizer_seed"),
    }
    return {name: value for name, value in chosen.items() if value not in (None, ())}


def _seat_call(
    run: Run,
    job: SeatJob,
    turns: list[tuple[str, str]] | None,
    usable: dict[int, CatalogModel],
) -> SeatCall:
    seat = job.seat
    refs = [seat["model"], *seat.get("fallbacks", [])]
    targets = targets_for(refs, run.conversation.owner, usable)
    # A single model's one seat writes the final answer itself: the caller's choices
    # for the final answer are its own.
    alone = len(run.config["seats"]) == 1 and not run.config.get("judge")
    chosen = final_choices(run.config) if alone else {}
    max_tokens = chosen.get("max_tokens") or seat.get("max_tokens") or settings.DEFAULT_MAX_TOKENS
    context = targets[0].context_length
    # What an API caller asked for: a seat's answer may reach it as written (a single
    # model, or a strategy returning a seat's answer), so it is in the caller's format;
    # a panel's seats read the caller's tools, and one model alone is sent them.
    config = run.config
    solo = not config.get("judge")
    notes = [seat.get("system_prompt"), job.system_note]
    notes += ["" if solo else client_tools.seat_note(config)]
    notes += [json_modes.instruction(config.get("response_format"))]
    system = "\n\n".join(p for p in notes if p) or None
    if turns is None:
        given = list(run.config["conversation"])
        if job.question:
            given[-1] = {**given[-1], "content": job.question}
        messages = fit_given_messages(given, context, max_tokens, system)
    else:
        question = job.question or run.message.content
        messages = fit_messages(question, turns, context, max_tokens, system)
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


async def run_seats(ctx: RunContext, jobs: list[SeatJob]) -> None:
    """These seats at once; then the quorum and deadline rule decides when to stop."""
    tasks: dict[asyncio.Task, Answer] = {}
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


# --- rows -------------------------------------------------------------------------------


def new_answer(run: Run, role: str, position: int, ref: dict, prompt, subquestion="") -> Answer:
    return Answer.objects.create(
        run=run,
        role=role,
        position=position,
        catalog_model_id=ref.get("catalog_id"),
        model_key=ref["model_id"],
        model_name=ref["name"],
        provider_name=ref["provider"],
        prompt=[{"role": m.role, "content": m.content} for m in prompt] if prompt else None,
        subquestion=subquestion,
    )


def _copied_answer(run: Run, source: Answer, position: int, text: str, cost_source: str):
    return Answer.objects.create(
        run=run,
        role=Answer.Role.SYNTHESIZER,
        position=position,
        catalog_model_id=source.catalog_model_id,
        model_key=source.model_key,
        model_name=source.model_name,
        provider_name=source.provider_name,
        text=text,
        status=Answer.Status.DONE,
        cost_usd=Decimal(0),
        cost_source=cost_source,
    )


async def final_from(ctx: RunContext, chosen: Answer, text: str | None = None) -> Answer:
    """A seat's answer made final as it was written (a vote's winner, a confident
    gate, a judge that gave nothing to fuse with): no call, so no cost of its own."""
    final = await in_db(
        _copied_answer, ctx.run, chosen, ctx.take_position(), text or chosen.text, "unfused"
    )
    await ctx.announce(events.answer_created(final))
    await ctx.announce(events.answer_ended(final, 0))
    return final


async def open_call(
    ctx: RunContext, role: str, refs: list[dict | None], messages
) -> tuple[Answer, list[Target] | None]:
    """A new answer row for a call to the first of `refs` (the rest are fallbacks),
    shown in the room; its targets, or None when none may be called (the row then
    says why)."""
    position = ctx.take_position()
    answer, targets = await in_db(_open_row, ctx, role, position, refs, messages)
    await ctx.announce(events.answer_created(answer))
    return answer, targets


def _open_row(
    ctx: RunContext, role: str, position: int, refs: list[dict | None], messages
) -> tuple[Answer, list[Target] | None]:
    """The row and the targets in one trip to the database (each trip waits for the
    run's database thread, and under load that wait outweighs the queries)."""
    first = refs[0]
    assert first is not None, "the first reference is the model called; only fallbacks are optional"
    answer = new_answer(ctx.run, role, position, first, messages)
    try:
        return answer, targets_for(refs, ctx.owner)
    except ProviderError as error:
        answer.status, answer.error = Answer.Status.FAILED, error.message
        answer.save(update_fields=["status", "error"])
        return answer, None


# --- constrained JSON calls -------------------------------------------------------------


def json_format(ref: dict, schema: dict) -> dict:
    """Ask for JSON the way the model's server understands: llama.cpp constrains its
    output with the schema itself; OpenAI-compatible APIs take json_object."""
    if ref.get("local"):
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


async def ask_json(
    ctx: RunContext,
    role: str,
    ref: dict,
    messages: tuple[ChatMessage, ...],
    schema: dict,
    max_tokens: int = 300,
    deadline_s: float = 60,
) -> tuple[dict | None, Answer]:
    """One small call whose reply must be a JSON object: (the object or None, its row)."""
    answer, targets = await open_call(ctx, role, [ref], messages)
    if targets is None:
        return None, answer
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        response_format=json_format(ref, schema),
        depth=ctx.run.config.get("depth", 0),
    )
    result = await run_answer(
        ctx, answer, targets, request, CallLimits.from_settings(total_s=deadline_s)
    )
    if not result.ok:
        return None, answer
    return prompts.json_object(result.text), answer


# --- judge --------------------------------------------------------------------------------


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


def label_answers(run: Run, answers: list[Answer]) -> list[tuple[str, int, str]]:
    """Anonymised, shuffled (label, answer id, text); a sub-answer says what it answers."""

    def shown(answer: Answer) -> str:
        if answer.subquestion:
            return f"(This answers the part: {answer.subquestion})\n{answer.text}"
        return answer.text

    return prompts.anonymise([(a.pk, shown(a)) for a in answers], random.Random(run.pk))


async def _checks(ctx: RunContext, question: str, labelled) -> list[dict]:
    """When the panel lets the judge run code: one call with run_python, in which the
    judge runs what the answers disagree about. Returns what it ran and what came out."""
    config = ctx.run.config
    ref = config["judge"]
    if not config.get("judge_tools") or not ref.get("supports_tools"):
        return []
    messages = prompts.judge_check_messages(question, labelled)
    answer, targets = await open_call(ctx, Answer.Role.JUDGE, [ref], messages)
    if targets is None:
        return []
    env = ToolEnv(http=ctx.http, redis=ctx.redis)
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=400,
        temperature=0.0,
        depth=config.get("depth", 0),
    )
    limits = CallLimits.from_settings(total_s=settings.JUDGE_DEADLINE_S)
    await run_answer(ctx, answer, targets, request, limits, ToolUse(["run_python"], 3, env))
    checks = []
    for step in answer.tool_steps:
        try:
            code = json.loads(step["arguments"]).get("code", "")
        except (ValueError, AttributeError):
            code = step["arguments"]
        checks.append({"code": code, "output": step["output"], "summary": step["preview"]})
    return checks


async def judge(ctx: RunContext, question: str, labelled) -> Verdict:
    """The analysis: structured JSON, with one repair attempt when the reply ended
    normally but was not valid; a reply cut off (by its budget, its deadline or a loop)
    is not a format error and is not repaired. When the panel lets it, the judge first
    runs code to settle what can be settled, and the analysis cites it."""
    config = ctx.run.config
    ref, drafts = config["judge"], config.get("judge_drafts", False)
    checks = await _checks(ctx, question, labelled)
    shown = "\n\n".join(f"Ran:\n{c['code']}\nResult:\n{c['output']}" for c in checks)
    messages = prompts.judge_messages(question, labelled, drafts, shown)
    known = [label for label, _, _ in labelled]
    max_tokens = judge_budget(len(labelled), drafts)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.JUDGE_DEADLINE_S
    verdict = Verdict()
    for _attempt in range(2):
        answer, targets = await open_call(ctx, Answer.Role.JUDGE, [ref], messages)
        if targets is None:
            return Verdict(
                failure=Run.Failure.JUDGE_UPSTREAM_ERROR,
                detail=f"The judge could not run: {answer.error}",
            )
        request = ChatRequest(
            model=targets[0].model_id,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0.0,
            response_format=json_format(ref, prompts.analysis_schema(known, drafts)),
            depth=config.get("depth", 0),
        )
        limits = CallLimits.from_settings(total_s=max(1.0, round(deadline - loop.time())))
        result = await run_answer(ctx, answer, targets, request, limits)
        if not result.ok:
            kind = result.error.kind if result.error else None
            runaway = kind in (ErrorKind.REPETITION, ErrorKind.TIMEOUT, ErrorKind.TOO_LARGE)
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
            if checks:
                verdict.analysis["checks"] = checks  # what was run, and what came out
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


# --- synthesis ----------------------------------------------------------------------------


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


async def synthesize(
    ctx: RunContext, question: str, labelled, verdict: Verdict, parts: list[str] | None = None
) -> Answer:
    config = ctx.run.config
    analysis = verdict.analysis
    # An API caller's tools or JSON mode need a synthesizer's call that is sent them.
    for_caller = client_tools.of(config) or config.get("response_format")
    if config.get("judge_drafts") and analysis and analysis.get("draft") and not for_caller:
        # The judge already wrote the answer: no second call.
        return await in_db(
            _drafted_answer, ctx.run, config["judge"], analysis["draft"], ctx.take_position()
        )
    refs = [config["synthesizer"], config.get("synthesizer_fallback")]
    messages = prompts.synthesizer_messages(
        question, labelled, prompts.analysis_as_text(analysis, verdict.raw), parts
    )
    fmt = config.get("response_format")
    notes = [client_tools.synthesizer_note(config), json_modes.instruction(fmt)]
    if any(notes):
        system = "\n\n".join([messages[0].content, *filter(None, notes)])
        messages = (ChatMessage("system", system), *messages[1:])
    answer, targets = await open_call(ctx, Answer.Role.SYNTHESIZER, refs, messages)
    if targets is None:
        return answer
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=config.get("synthesizer_max_tokens") or settings.SYNTHESIZER_MAX_TOKENS,
        temperature=config.get("synthesizer_temperature"),
        depth=config.get("depth", 0),
        stop=tuple(config.get("synthesizer_stop") or ()),
        seed=config.get("synthesizer_seed"),
        response_format=json_modes.for_server(fmt, config["synthesizer"]),
        **client_tools.request_options(config),
    )
    limits = CallLimits.from_settings(total_s=settings.SYNTHESIZER_DEADLINE_S)
    await run_answer(ctx, answer, targets, request, limits)
    return answer


# --- run state ------------------------------------------------------------------------------


def _set_status(run: Run, status: str) -> None:
    run.status = status
    run.save(update_fields=["status"])


async def enter(ctx: RunContext, status: str) -> None:
    """The run moves to a new stage: saved, and shown in the room."""
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

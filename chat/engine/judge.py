"""The judge: the panel's answers, anonymised and shuffled, read by one model that
returns a structured analysis. The reply must be JSON; one that ended normally but
is not valid gets one repair request. The judge is bounded by a token allowance
sized to the panel and by its deadline (JUDGE_DEADLINE_S). When the panel lets it,
the judge first runs code to settle what the answers disagree about.

This module makes the judge's calls (`ask_judge`); the strategies' judging stage,
which also saves and shows the analysis, is strategies/common.py `judge_answers`.
"""

import asyncio
import json
import random
from dataclasses import dataclass

from django.conf import settings

from chat.models import Answer, Run
from panels.calls import CallLimits, CallResult
from panels.providers import ChatMessage, ChatRequest, ErrorKind

from . import analysis, prompts
from .answer import RunContext, run_answer
from .json_calls import json_format
from .rows import open_call
from .tool_loop import ToolUse
from .tools.base import ToolEnv


@dataclass
class Verdict:
    """What the judge stage produced: a validated analysis, or the raw text of a
    reply that never became valid JSON, or a failure with its typed reason."""

    analysis: dict | None = None
    raw: str = ""
    failure: str = ""  # a Run.Failure when the judge gave nothing usable
    detail: str = ""


def token_allowance(answers: int, drafts: bool) -> int:
    """The most tokens the judge may write: a base plus so much per answer judged
    (and conversation for a draft), never more than JUDGE_MAX_TOKENS. A flat allowance let
    a looping local judge decode for minutes."""
    wanted = 200 + settings.JUDGE_TOKENS_PER_ANSWER * answers
    if drafts:
        wanted += settings.SYNTHESIZER_MAX_TOKENS
    return min(settings.JUDGE_MAX_TOKENS, wanted)


def label_answers(run: Run, answers: list[Answer]) -> list[tuple[str, int, str]]:
    """Anonymised, shuffled (label, answer id, text); a sub-answer says what it answers.
    Labels are Draft 1, Draft 2… when the question has lettered choices."""

    def shown(answer: Answer) -> str:
        if answer.subquestion:
            return f"(This answers the part: {answer.subquestion})\n{answer.text}"
        return answer.text

    drafts = prompts.has_lettered_choices(run.message.content)
    return prompts.anonymise([(a.pk, shown(a)) for a in answers], random.Random(run.pk), drafts)


async def _code_checks(
    ctx: RunContext, question: str, labelled, stage: str | None = None
) -> list[dict]:
    """When the panel lets the judge run code: one call with run_python, in which the
    judge runs what the answers disagree about. Returns what it ran and what came out."""
    config = ctx.run.config
    ref = config["judge"]
    if not config.get("judge_tools") or not ref.get("supports_tools"):
        return []
    messages = prompts.judge_check_messages(question, labelled)
    answer, targets = await open_call(ctx, Answer.Role.JUDGE, [ref], messages, stage)
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


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _call(
    ctx: RunContext,
    messages,
    known: list[str],
    max_tokens: int,
    deadline: float,
    stage: str | None = None,
) -> tuple[Answer, CallResult | None]:
    """One call of the judge for its analysis (a row of its own): the row, and what
    the call returned, or None when the judge's model may not be called."""
    config = ctx.run.config
    ref, drafts = config["judge"], config.get("judge_drafts", False)
    answer, targets = await open_call(ctx, Answer.Role.JUDGE, [ref], messages, stage)
    if targets is None:
        return answer, None
    request = ChatRequest(
        model=targets[0].model_id,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        response_format=json_format(ref, analysis.analysis_schema(known, drafts)),
        depth=config.get("depth", 0),
    )
    limits = CallLimits.from_settings(total_s=max(1.0, round(deadline - _now())))
    return answer, await run_answer(ctx, answer, targets, request, limits)


def _nothing_usable(answer: Answer, result: CallResult | None) -> Verdict | None:
    """The failed verdict when a call of the judge gave nothing to read as an
    analysis (it could not run, failed, or said nothing); None when it did."""
    if result is None:
        return Verdict(
            failure=Run.Failure.JUDGE_UPSTREAM_ERROR,
            detail=f"The judge could not run: {answer.error}",
        )
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
    return None


async def ask_judge(ctx: RunContext, question: str, labelled, stage: str | None = None) -> Verdict:
    """The judge's analysis of these labelled answers: structured JSON, with one
    repair attempt when the reply ended normally but was not valid; a reply cut off
    (by its token allowance, its deadline or a loop) is not a format error and is not
    repaired. When the panel lets it, the judge first runs code to settle what can be
    settled, and the analysis cites it. With `stage`, the run enters it with the
    judge's first call (rows.open_call)."""
    drafts = ctx.run.config.get("judge_drafts", False)
    checks = await _code_checks(ctx, question, labelled, stage)
    shown = "\n\n".join(f"Ran:\n{c['code']}\nResult:\n{c['output']}" for c in checks)
    messages = prompts.judge_messages(question, labelled, drafts, shown)
    known = [label for label, _, _ in labelled]
    max_tokens = token_allowance(len(labelled), drafts)
    deadline = _now() + settings.JUDGE_DEADLINE_S
    verdict = Verdict()
    for _attempt in range(2):
        answer, result = await _call(ctx, messages, known, max_tokens, deadline, stage)
        if (failed := _nothing_usable(answer, result)) is not None:
            return failed
        assert result is not None  # _nothing_usable said so
        verdict.raw = result.text
        try:
            parsed = analysis.parse_analysis(result.text, known, drafts)
            verdict.analysis = analysis.checked_coverage(parsed, labelled, question)
            if checks:
                verdict.analysis["checks"] = checks  # what was run, and what came out
            return verdict
        except analysis.AnalysisError as problem:
            if result.finish_reason == "length":
                return Verdict(
                    raw=result.text,
                    failure=Run.Failure.JUDGE_RUNAWAY,
                    detail=f"The judge's reply was cut off at its allowance of {max_tokens} "
                    "tokens before it was complete.",
                )
            if deadline - _now() < 1:
                break  # no time left for a repair
            repair = prompts.REPAIR_PROMPT.format(problem=problem)
            messages = (
                *messages,
                ChatMessage("assistant", result.text),
                ChatMessage("user", repair),
            )
    return verdict  # text, but never valid JSON: the synthesizer reads it as written

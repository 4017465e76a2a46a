"""The synthesis: the synthesizer writes the final answer from the panel's answers
and the judge's analysis (or takes the judge's draft as it is, when the panel asks
the judge to draft and no API caller's tools or JSON mode need a call of its own).
"""

from dataclasses import replace
from decimal import Decimal

from django.conf import settings

from chat.models import Answer, Run
from panels.calls import CallLimits
from panels.providers import ChatMessage, ChatRequest

from . import client_tools, json_modes, prompts, stages
from .answer import RunContext, run_answer
from .db import in_db
from .judge import Verdict
from .rows import open_call


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
    ctx: RunContext,
    question: str,
    labelled,
    verdict: Verdict,
    parts: list[str] | None = None,
    stage: str | None = None,
) -> Answer:
    """The final answer from the labelled answers and the judge's verdict (its
    analysis, or its raw text when that never became JSON); `parts` are a routed
    question's sub-questions, each of which the answer must cover. With `stage`, the
    run enters it first (with the synthesizer's call, in the same trip)."""
    config = ctx.run.config
    analysis = verdict.analysis
    # An API caller's tools or JSON mode need a synthesizer's call that is sent them.
    for_caller = client_tools.of(config) or config.get("response_format")
    if config.get("judge_drafts") and analysis and analysis.get("draft") and not for_caller:
        # The judge already wrote the answer: no second call.
        if stage is not None:
            await stages.enter(ctx, stage)
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
    answer, targets = await open_call(ctx, Answer.Role.SYNTHESIZER, refs, messages, stage)
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
    if client_tools.unmet(config, answer) and not ctx.cancelled:
        return await _asked_again(ctx, refs, request, limits)
    return answer


async def _asked_again(ctx: RunContext, refs, request: ChatRequest, limits) -> Answer:
    """The synthesizer wrote text where the caller's tool_choice demanded a call: one
    more call, told so. Its answer is the final one (Run.final_answer takes the last
    synthesis); if it writes text again, the run fails (client_tools.checked)."""
    messages = (*request.messages, ChatMessage("user", client_tools.insistence(ctx.run.config)))
    answer, targets = await open_call(ctx, Answer.Role.SYNTHESIZER, refs, messages)
    if targets is not None:
        retry = replace(request, model=targets[0].model_id, messages=messages)
        await run_answer(ctx, answer, targets, retry, limits)
    return answer

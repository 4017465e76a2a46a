"""Answer rows for the calls made after the seats (a router, the judge, the
synthesizer, a vote's extraction or tie-break): each opened and shown in the conversation
before its call, so it is streamed, costed and drawn on the trace like a seat's;
or a seat's answer copied as the final one when no call is made."""

from decimal import Decimal

from chat.models import Answer, Run
from panels.calls import Target
from panels.providers import ProviderError

from . import events
from .answer import RunContext
from .db import in_db
from .targets import targets_for


def seat_again(run: Run, like: Answer, subquestion: str = "") -> Answer:
    """A seat answering once more (a second part for route, an extra draw for verify):
    a row of its own, at the seat's place, with the seat's model."""
    return Answer.objects.create(
        run=run,
        role=Answer.Role.SEAT,
        position=like.position,
        catalog_model_id=like.catalog_model_id,
        model_key=like.model_key,
        model_name=like.model_name,
        provider_name=like.provider_name,
        subquestion=subquestion,
    )


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
    ctx: RunContext, role: str, refs: list[dict | None], messages, stage: str | None = None
) -> tuple[Answer, list[Target] | None]:
    """A new answer row for a call to the first of `refs` (the rest are fallbacks),
    shown in the conversation; its targets, or None when none may be called (the row then
    says why). With `stage`, the run enters that stage in the same trip, and both
    events leave in one round trip: between one stage's last byte and the next one's
    request there is one trip to the database and one to Redis, not two of each."""
    position = ctx.take_position()
    entering = stage if stage is not None and ctx.run.status != stage else None
    if entering:
        ctx.run.status = entering
    answer, targets = await in_db(_open_row, ctx, role, position, refs, messages, entering)
    shown = [events.run_status(ctx.run)] if entering else []
    await ctx.announce_all([*shown, events.answer_created(answer)])
    return answer, targets


def _open_row(
    ctx: RunContext,
    role: str,
    position: int,
    refs: list[dict | None],
    messages,
    entering: str | None = None,
) -> tuple[Answer, list[Target] | None]:
    """The row and the targets in one trip to the database (each trip waits for the
    run's database thread, and under load that wait outweighs the queries); the
    run's new stage first, when it enters one (saved before it is announced)."""
    if entering:
        Run.objects.filter(pk=ctx.run.pk).update(status=entering)
    first = refs[0]
    assert first is not None, "the first reference is the model called; only fallbacks are optional"
    answer = new_answer(ctx.run, role, position, first, messages)
    try:
        return answer, targets_for(refs, ctx.owner)
    except ProviderError as error:
        answer.status, answer.error = Answer.Status.FAILED, error.message
        answer.save(update_fields=["status", "error"])
        return answer, None

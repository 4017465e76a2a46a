"""Route: Fusion A's router. A router model names the question's category (with a
confidence) and may split it into sub-questions; each goes to the seats tagged for
its category. A misroute never fails a run: no tagged seat, a confidence below the
panel's threshold, or a router that fails or answers nonsense all send the question
to the whole panel. Sub-answers are judged together and synthesized into one
answer that covers every part."""

from chat.models import Answer, Run

from .. import events, json_calls, prompts, rows, stages
from ..answer import RunContext
from ..db import in_db
from ..seats import SeatJob, answered, run_seats, seat_config, skip
from .common import CANCELLED, Outcome, answer_all, fuse, saved_estimate

Plan = list[tuple[str | None, str]]  # (sub-question or None for the whole, category)


def _plan(reply: dict | None, settings: dict) -> tuple[Plan | None, dict]:
    """What the router's reply means, or None (and why) when it cannot be trusted."""
    categories, threshold = settings["categories"], settings["threshold"]
    if not isinstance(reply, dict):
        return None, {"why": "The router gave no usable reply"}
    category, confidence = reply.get("category"), reply.get("confidence")
    if category not in categories:
        return None, {"why": f"The router answered {str(category)[:40]!r}, not a category"}
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return None, {"why": "The router gave no confidence", "category": category}
    confidence = min(1.0, max(0.0, float(confidence)))
    known = {"category": category, "confidence": round(confidence, 3)}
    if confidence < threshold:
        return None, {"why": f"The router was unsure ({confidence:.2f})", **known}
    parts: Plan = []
    if settings.get("max_subquestions", 0) > 1 and isinstance(reply.get("subquestions"), list):
        for item in reply["subquestions"][: settings["max_subquestions"]]:
            if (
                isinstance(item, dict)
                and isinstance(item.get("question"), str)
                and item["question"].strip()
                and item.get("category") in categories
            ):
                parts.append((item["question"].strip()[:500], item["category"]))
    if len(parts) >= 2:
        return parts, known
    return [(None, str(category))], known


async def _whole_panel(ctx: RunContext, seats: list[Answer], why: str, detail: dict) -> Outcome:
    await ctx.decide("route", f"{why}: the whole panel answers", **detail)
    await answer_all(ctx, seats)
    return await fuse(ctx, seats)


def _experts(ctx: RunContext, seats: list[Answer], category: str) -> list[Answer]:
    return [a for a in seats if category in (seat_config(ctx, a).get("tags") or [])]


async def _ask_router(ctx: RunContext) -> dict | None:
    """The router's reply (timed as the routing stage), or None without a router."""
    config, settings = ctx.run.config, ctx.run.config["strategy"]
    question = ctx.run.message.content
    await stages.enter(ctx, Run.Status.ROUTING)
    mark = stages.now()
    reply = None
    if ref := config.get("router"):
        reply, _ = await json_calls.ask_json(
            ctx,
            Answer.Role.ROUTER,
            ref,
            prompts.router_messages(question, settings["categories"], settings["max_subquestions"]),
            prompts.router_schema(settings["categories"], settings["max_subquestions"]),
            max_tokens=120 + 120 * settings["max_subquestions"],
        )
    stages.timed(ctx, "routing", mark)
    return reply


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    reply = await _ask_router(ctx)
    if ctx.cancelled:
        return CANCELLED
    plan, detail = _plan(reply, ctx.run.config["strategy"])
    if plan is None:
        return await _whole_panel(ctx, seats, detail.pop("why"), detail)
    if len(plan) == 1:
        return await _to_experts(ctx, seats, plan[0][1], detail)
    return await _decomposed(ctx, seats, plan, detail)


async def _to_experts(ctx: RunContext, seats: list[Answer], category: str, detail: dict) -> Outcome:
    """The whole question to the seats tagged for its category."""
    chosen = _experts(ctx, seats, category)
    if not chosen:
        return await _whole_panel(ctx, seats, f"No seat is tagged {category}", detail)
    others = [a for a in seats if a not in chosen]
    saved = await saved_estimate(ctx, others)
    await skip(ctx, others, f"Not needed: the question went to the {category} experts.")
    names = [a.model_name for a in chosen]
    await ctx.decide(
        "route",
        f"Routed to {category} experts (confidence {detail['confidence']:.2f})",
        **detail,
        seats=names,
        **saved,
    )
    await answer_all(ctx, chosen)
    if len(chosen) == 1 and answered(chosen):
        await rows.final_from(ctx, chosen[0])  # one expert: its answer is final
        return Outcome(Run.Status.DONE)
    return await fuse(ctx, chosen)


async def _decomposed(ctx: RunContext, seats: list[Answer], plan: Plan, detail: dict) -> Outcome:
    """Every part to its experts (the whole panel when none is tagged)."""
    jobs, used, routed = [], set(), []
    for part, category in plan:
        for seat in _experts(ctx, seats, category) or seats:
            if seat.pk in used:
                answer = await in_db(rows.seat_again, ctx.run, seat, part)
                await ctx.announce(events.answer_created(answer))
            else:
                used.add(seat.pk)
                answer, answer.subquestion = seat, part or ""
                await in_db(lambda a=answer: a.save(update_fields=["subquestion"]))
            jobs.append(SeatJob(answer, seat_config(ctx, seat), question=part))
        routed.append({"part": part, "category": category})
    unused = [a for a in seats if a.pk not in used]
    saved = await saved_estimate(ctx, unused)
    await skip(ctx, unused, "Not needed: no part of the question went to this seat.")
    await ctx.decide(
        "route",
        f"Split into {len(plan)} parts: "
        + "; ".join(f"“{p['part']}” → {p['category']}" for p in routed),
        **detail,
        parts=routed,
        **saved,
    )
    await stages.enter(ctx, Run.Status.PANEL)
    mark = stages.now()
    await run_seats(ctx, jobs)
    stages.timed(ctx, "panel", mark)
    return await fuse(ctx, [job.answer for job in jobs], parts=[p or "" for p, _ in plan])

"""Vote: Fusion A's aggregation layer. Every seat answers; each answer is reduced to
its final short answer (by rule, else by one constrained call to the judge model),
normalised and grouped; each group weighs the sum of its seats' weights (times the
judge's score, when the panel asks for it). More than half of the weight cast wins;
a tie or no majority goes to the judge. The final answer is the best member of the
winning group as it was written — not a rewrite — with the tally and the vote share
as its confidence."""

from dataclasses import dataclass, field

from chat.models import Answer, Run

from .. import json_calls, judge, prompts, rows, shortanswer
from ..answer import RunContext
from ..seats import answered, seat_config
from .common import CANCELLED, Outcome, all_failed, answer_all, fuse, judge_answers


@dataclass
class Group:
    key: str  # the normalised answer
    shown: str  # as the first member wrote it
    members: list[Answer] = field(default_factory=list)
    weight: float = 0.0


@dataclass
class Tally:
    groups: list[Group]  # heaviest first
    abstained: list[Answer]
    winner: Group | None = None
    tie_broken_by_judge: bool = False

    @property
    def cast(self) -> float:
        return sum(g.weight for g in self.groups)

    @property
    def share(self) -> float:
        return self.winner.weight / self.cast if self.winner and self.cast else 0.0

    def score_line(self) -> str:
        """ "3–1" or "2.5–1–1": the winner's weight first, then the others."""
        order = sorted(self.groups, key=lambda g: g is not self.winner)
        return "–".join(f"{g.weight:g}" for g in order)

    def as_detail(self) -> dict:
        return {
            "groups": [
                {"answer": g.shown, "weight": g.weight, "seats": [a.model_name for a in g.members]}
                for g in self.groups
            ],
            "abstained": [a.model_name for a in self.abstained],
            "winner": self.winner.shown if self.winner else None,
            "confidence": round(self.share, 3),
            "tie_broken_by_judge": self.tie_broken_by_judge,
        }


def _weight(ctx: RunContext, answer: Answer) -> float:
    """The vote weight of the seat that wrote `answer` (default 1)."""
    return float(seat_config(ctx, answer).get("weight", 1.0) or 0.0)


async def _short_answers(ctx: RunContext, answers: list[Answer]) -> dict[int, str | None]:
    """Each answer's final short answer: by rule, else asked of the judge model in
    one call for all the unclear ones; None is an abstention."""
    found = {a.pk: shortanswer.extract(a.text) for a in answers}
    unclear = [a for a in answers if found[a.pk] is None]
    ref = ctx.run.config.get("judge")
    if unclear and ref:
        labelled = judge.label_answers(ctx.run, unclear)
        labels = [label for label, _, _ in labelled]
        reply, _ = await json_calls.ask_json(
            ctx,
            Answer.Role.JUDGE,
            ref,
            prompts.extraction_messages(ctx.run.message.content, labelled),
            prompts.extraction_schema(labels),
        )
        extracted = (reply or {}).get("answers") if isinstance(reply, dict) else None
        for label, answer_id, _ in labelled:
            value = extracted.get(label) if isinstance(extracted, dict) else None
            if isinstance(value, str) and value.strip():
                found[answer_id] = value.strip()
    return found


async def count(
    ctx: RunContext, answers: list[Answer], scores: dict[int, float] | None = None
) -> Tally:
    """The tally of `answers` (each a seat's answer, weighed by its seat's weight and,
    when given, its judge score out of 10)."""
    short = await _short_answers(ctx, answers)
    groups: dict[str, Group] = {}
    abstained = []
    for answer in answers:
        value = short[answer.pk]
        key = shortanswer.normalise(value) if value else ""
        if not key:
            abstained.append(answer)
            continue
        weight = _weight(ctx, answer)
        if scores is not None:
            weight *= scores.get(answer.pk, 5.0) / 10
        group = groups.setdefault(key, Group(key, value or key))
        group.members.append(answer)
        group.weight = round(group.weight + weight, 6)
    ordered = sorted(groups.values(), key=lambda g: -g.weight)  # stable: seat order on ties
    tally = Tally(ordered, abstained)
    if not ordered:
        return tally
    top = [g for g in ordered if g.weight == ordered[0].weight]
    if len(top) == 1 and top[0].weight > tally.cast / 2:
        tally.winner = top[0]
        return tally
    # A tie, or no group has more than half of the weight: the judge decides.
    contenders = top if len(top) > 1 else ordered
    tally.winner = await _judge_breaks(ctx, contenders) or contenders[0]
    tally.tie_broken_by_judge = True
    return tally


async def _judge_breaks(ctx: RunContext, contenders: list[Group]) -> Group | None:
    ref = ctx.run.config.get("judge")
    if not ref:
        return None
    candidates = [g.shown for g in contenders]
    examples = [(g.shown, g.members[0].text) for g in contenders]
    reply, _ = await json_calls.ask_json(
        ctx,
        Answer.Role.JUDGE,
        ref,
        prompts.tie_break_messages(ctx.run.message.content, examples),
        prompts.tie_break_schema(candidates),
    )
    chosen = reply.get("winner") if isinstance(reply, dict) else None
    for group in contenders:
        if isinstance(chosen, str) and shortanswer.normalise(chosen) == group.key:
            return group
    return None


def best_member(group: Group, ctx: RunContext, scores: dict[int, float] | None) -> Answer:
    def rank(answer: Answer) -> tuple:
        return (-(scores or {}).get(answer.pk, 0.0), -_weight(ctx, answer), answer.position)

    return sorted(group.members, key=rank)[0]


def scores_by_answer(analysis: dict | None) -> dict[int, float] | None:
    if not analysis:
        return None
    labels = analysis.get("labels", {})
    return {
        labels[s["label"]]: float(s["score"]) for s in analysis["scores"] if s["label"] in labels
    }


async def finish_by_vote(ctx: RunContext, answers: list[Answer]) -> Outcome:
    """The vote over these answers decides the run (used by vote and by gate)."""
    usable = answered(answers)
    if not usable:
        return all_failed(answers)
    scores, judged = None, None
    settings = ctx.run.config.get("strategy") or {}
    if settings.get("use_judge_scores") and ctx.run.config.get("judge"):
        judged = await judge_answers(ctx, usable)
        scores = scores_by_answer(ctx.run.analysis)
    tally = await count(ctx, usable, scores)
    if tally.winner is None:
        await ctx.decide(
            "vote",
            "No seat gave a short answer to vote on: the judge and synthesizer decide instead",
            **tally.as_detail(),
        )
        return await fuse(ctx, answers, judged=judged)  # the judge is not asked twice
    how = " (tie broken by the judge)" if tally.tie_broken_by_judge else ""
    await ctx.decide(
        "vote",
        f"Vote {tally.score_line()} for {tally.winner.shown}{how}, confidence {tally.share:.2f}",
        **tally.as_detail(),
    )
    await rows.final_from(ctx, best_member(tally.winner, ctx, scores))
    return Outcome(Run.Status.DONE)


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    await answer_all(ctx, seats)
    if ctx.cancelled:
        return CANCELLED
    return await finish_by_vote(ctx, seats)

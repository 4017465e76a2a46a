from django import template
from django.utils.safestring import mark_safe

from chat.models import Answer, Run

register = template.Library()

# A decision's stage (chat/engine/strategies/*, `ctx.decide(stage, …)`) as the word the
# "how this answer was made" line says; a stage not listed here is shown by its name.
_STAGE_WORDS = {
    "route": "routed",
    "vote": "voted",
    "gate": "gated",
    "escalate": "escalated",
    "verify": "verified",
}


@register.filter
def answer_html(answer: Answer) -> str:
    # Rendered and sanitised (nh3) once, when the answer was saved: a page view never
    # renders Markdown. Marking it safe is what the sanitising is for.
    return mark_safe(answer.body_html)  # noqa: S308


@register.filter
def how_made(run: Run) -> str:
    """What the run did, from what it recorded: "voted, 3 models" for a vote that
    needed no judge, "2 of 3 models, judge, synthesis" for a fusion with a seat skipped.
    Read from the decisions and the answers, never from the strategy's name, so a new
    strategy (or one that ended early) is described as it ran."""
    parts = [_STAGE_WORDS.get(stage, stage) for stage in _stages(run)]
    seats = run.seat_answers
    answered = sum(1 for a in seats if a.status != Answer.Status.SKIPPED)
    if answered == len(seats):
        parts.append(f"{answered} model{'' if answered == 1 else 's'}")
    else:
        parts.append(f"{answered} of {len(seats)} models")
    if run.judge_answers:
        parts.append("judge")
    if run.synthesis:
        parts.append("synthesis")
    return ", ".join(parts)


def _stages(run: Run) -> list[str]:
    return list(dict.fromkeys(d["stage"] for d in run.decisions if d.get("stage")))

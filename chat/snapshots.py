"""What a (re)connecting browser needs to be whole again: the recent runs of a
room, each answer's text so far and the sequence number it is at, the analysis
and the totals."""

from . import markdown, streams
from .db import in_db
from .models import Run
from .streaming import answer_stats

RECENT_RUNS = 3


def _recent_runs(conversation_id: int) -> list[Run]:
    runs = Run.objects.filter(message__conversation_id=conversation_id).prefetch_related("answers")
    recent = list(runs.order_by("-pk")[:RECENT_RUNS])
    active = runs.filter(status__in=Run.ACTIVE).exclude(pk__in=[r.pk for r in recent])
    return recent + list(active)


def run_summary(run: Run) -> dict:
    return {
        "run": run.pk,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "failure_detail": run.failure_detail,
        "analysis": run.analysis,
        "analysis_structured": run.analysis_structured,
        "cost": None if run.cost_usd is None else str(run.cost_usd),
        "solo_cost": None if run.solo_cost_usd is None else str(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
    }


async def room_snapshot(redis, conversation_id: int) -> dict:
    runs = await in_db(_recent_runs, conversation_id)
    payload = []
    for run in runs:
        answers = []
        for answer in run.answers.all():
            item = {
                "answer": answer.pk,
                "role": answer.role,
                "model": answer.model_name,
                "status": answer.status,
                "error": answer.error,
            }
            if answer.is_live:
                item["text"], item["seq"] = await streams.live_state(redis, answer.pk)
                if item["text"]:
                    item["status"] = "streaming"  # the database only learns the outcome
            else:
                item["html"] = markdown.render(answer.text)
                item["stats"] = answer_stats(answer)
                item["seq"] = 0
            answers.append(item)
        payload.append({**run_summary(run), "answers": answers})
    return {"type": "snapshot", "runs": payload}

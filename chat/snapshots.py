"""What a (re)connecting browser needs to be whole again: the recent runs of a
room with each answer's text so far and the sequence number it is at."""

from . import markdown, streams
from .models import Answer, Run
from .pipeline import answer_stats

RECENT_RUNS = 3


def _recent_runs(conversation_id: int) -> list[Run]:
    recent = list(
        Run.objects.filter(message__conversation_id=conversation_id)
        .prefetch_related("answers")
        .order_by("-pk")[:RECENT_RUNS]
    )
    active = Run.objects.filter(
        message__conversation_id=conversation_id, status__in=Run.ACTIVE
    ).exclude(pk__in=[r.pk for r in recent])
    return recent + list(active.prefetch_related("answers"))


async def room_snapshot(redis, conversation_id: int) -> dict:
    from .db import in_db

    runs = await in_db(_recent_runs, conversation_id)
    payload = []
    for run in runs:
        answers = []
        for answer in run.answers.all():
            item = {"answer": answer.pk, "status": answer.status, "error": answer.error}
            if answer.is_live:
                item["text"], item["seq"] = await streams.live_state(redis, answer.pk)
            else:
                item["html"] = markdown.render(answer.text)
                item["stats"] = answer_stats(answer)
                item["seq"] = 0
            answers.append(item)
        payload.append(
            {
                "run": run.pk,
                "status": run.status,
                "failure_reason": run.failure_reason,
                "answers": answers,
            }
        )
    return {"type": "snapshot", "runs": payload}


__all__ = ["Answer", "room_snapshot"]

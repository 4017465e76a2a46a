"""A conversation exported as Markdown or JSON: every turn of its current branch (and
which other versions each turn has), every seat's answer, the judge's analysis, the
strategy's decisions, the costs and the links to the traces.

The owner exports from the conversation's menu, anyone with its share link from the
shared page. An export is streamed a turn at a time (the turns read CHUNK at a time,
each let go once written), so a conversation of thousands of turns is never held whole
in memory.
"""

import json
from collections.abc import Iterable, Iterator

from django.db.models import Prefetch
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from .models import Answer, Conversation, Message, with_versions


def unread():
    return Answer.objects.defer("html", "prompt", "attempts")


FORMATS = {"md": "text/markdown; charset=utf-8", "json": "application/json"}
# Turns read from the database at once: bounds what an export holds.
CHUNK = 20


@require_GET
def owned(request, pk: int, fmt: str):
    if not request.user.is_authenticated:
        raise Http404  # as for someone else's conversation
    conversation = get_object_or_404(Conversation, pk=pk, owner=request.user)
    return export(request, conversation, fmt)


@require_GET
def shared(request, token: str, fmt: str):
    return export(request, get_object_or_404(Conversation, share_token=token), fmt)


def export(request, conversation: Conversation, fmt: str) -> StreamingHttpResponse:
    if fmt not in FORMATS:
        raise Http404
    turns = branch_turns(conversation)
    link = request.build_absolute_uri
    body = (
        markdown(conversation, turns, link)
        if fmt == "md"
        else json_lines(conversation, turns, link)
    )
    response = StreamingHttpResponse(body, content_type=FORMATS[fmt])
    name = slugify(conversation.title)[:60] or f"conversation-{conversation.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    response["Cache-Control"] = "private, no-store"
    return response


def branch_turns(conversation: Conversation) -> Iterator[Message]:
    """The current branch's messages with their runs and answers, first turn first,
    read CHUNK at a time and each marked with its versions."""
    tree = conversation.message_tree()  # two integers a message
    branch = conversation.branch_ids(tree)
    for start in range(0, len(branch), CHUNK):
        chunk = list(
            Message.objects.filter(pk__in=branch[start : start + CHUNK])
            .select_related("run")
            # An export writes the Markdown, not the HTML, prompts or attempts: not read.
            .prefetch_related(Prefetch("run__answers", queryset=unread()))
            .order_by("pk")
        )
        for message in with_versions(chunk, tree):
            yield message
            let_go(message)


def let_go(message: Message) -> None:
    """Break the loops the ORM ties between a written turn's rows (message ↔ run by
    select_related, run ↔ answers by prefetch_related). Rows in a loop are freed only
    by the cyclic garbage collector, which runs rarely once they are old: a long export
    would keep most of its turns until it ended. Without loops they are freed at once."""
    run = message._state.fields_cache.pop("run", None)
    if run is None:
        return
    run._state.fields_cache.clear()
    for answer in getattr(run, "_prefetched_objects_cache", {}).get("answers", []):
        answer._state.fields_cache.clear()
    run._prefetched_objects_cache = {}


def turn_record(turn: Message, number: int, link) -> dict:
    """One turn as the JSON export writes it (the Markdown export reads the same)."""
    run = getattr(turn, "run", None)
    record: dict = {
        "turn": number,
        "message": turn.pk,
        "question": turn.content,
        "asked_at": turn.created_at.isoformat(),
        "version": turn.version,
        "versions": turn.version_count,
        "version_messages": list(turn.version_ids) or [turn.pk],
        "run": None,
    }
    if run is None:
        return record
    final = run.final_answer
    record["run"] = {
        "id": run.pk,
        "status": run.status,
        "strategy": run.strategy,
        "failure_reason": run.failure_reason,
        "failure_detail": run.failure_detail,
        "final_answer": final.text if final is not None else None,
        "final_answer_by": final.model_name if final is not None else None,
        "seats": [_answer(a) for a in run.seat_answers],
        "judge": [_answer(a) for a in run.judge_answers],
        "synthesis": _answer(run.synthesis) if run.synthesis is not None else None,
        "analysis": run.analysis if run.analysis is not None else (run.analysis_raw or None),
        "analysis_structured": run.analysis_structured,
        "decisions": run.decisions,
        "cost_usd": _money(run.cost_usd),
        "solo_cost_usd": _money(run.solo_cost_usd),
        "stage_ms": run.stage_ms,
        "trace": link(reverse("chat:trace", args=[run.pk])),
    }
    return record


def _answer(answer: Answer) -> dict:
    return {
        "model": answer.model_name,
        "provider": answer.provider_name,
        "role": answer.role,
        "position": answer.position,
        "subquestion": answer.subquestion,
        "status": answer.status,
        "text": answer.text,
        "error": answer.error,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cost_usd": _money(answer.cost_usd),
        "latency_ms": answer.latency_ms,
    }


def _money(value) -> str | None:
    return None if value is None else str(value)


def _header(conversation: Conversation, link) -> dict:
    return {
        "id": conversation.pk,
        "title": str(conversation),
        "answered_by": conversation.answered_by,
        "created_at": conversation.created_at.isoformat(),
        "exported_at": timezone.now().isoformat(),
        "url": link(conversation.get_absolute_url()),
    }


def json_lines(conversation: Conversation, turns: Iterable[Message], link) -> Iterator[str]:
    """One JSON document, {"conversation": …, "turns": [...]}, written a turn at a time."""
    yield '{"conversation": ' + json.dumps(_header(conversation, link)) + ', "turns": ['
    for number, turn in enumerate(turns, 1):
        yield ("" if number == 1 else ",") + "\n" + json.dumps(turn_record(turn, number, link))
    yield "\n]}\n"


def markdown(conversation: Conversation, turns: Iterable[Message], link) -> Iterator[str]:
    header = _header(conversation, link)
    yield (
        f"# {header['title']}\n\n"
        f"Answered by {header['answered_by']} · exported {header['exported_at']} · "
        f"{header['url']}\n"
    )
    for number, turn in enumerate(turns, 1):
        yield _turn_markdown(turn_record(turn, number, link))


def _turn_markdown(record: dict) -> str:
    lines = [f"\n## Turn {record['turn']}\n"]
    if record["versions"] > 1:
        others = ", ".join(str(m) for m in record["version_messages"] if m != record["message"])
        lines.append(
            f"*Version {record['version']} of {record['versions']}; "
            f"the other versions are messages {others}.*\n"
        )
    lines.append(f"**Question**\n\n{record['question']}\n")
    run = record["run"]
    if run is None:
        return "\n".join(lines)
    if run["final_answer"] is not None:
        lines.append(f"### Final answer ({run['final_answer_by']})\n\n{run['final_answer']}\n")
    if run["failure_detail"]:
        lines.append(f"> {run['status']}: {run['failure_detail']}\n")
    for seat in run["seats"]:
        title = f"### Seat {seat['position'] + 1}: {seat['model']} ({seat['status']}"
        title += f", ${seat['cost_usd']})" if seat["cost_usd"] is not None else ")"
        body = seat["text"] or (f"*{seat['error']}*" if seat["error"] else "*(no text)*")
        lines.append(f"{title}\n\n{body}\n")
    if run["analysis"] is not None:
        analysis = run["analysis"]
        if isinstance(analysis, str):
            lines.append(f"### Analysis\n\n{analysis}\n")
        else:
            lines.append(f"### Analysis\n\n```json\n{json.dumps(analysis, indent=2)}\n```\n")
    if run["decisions"]:
        lines.append("### Decisions\n")
        lines.extend(f"- {d.get('stage', '')}: {d.get('summary', '')}" for d in run["decisions"])
        lines.append("")
    cost = f"${run['cost_usd']}" if run["cost_usd"] is not None else "unknown"
    lines.append(
        f"Run {run['id']} ({run['strategy']}, {run['status']}) · cost {cost} · "
        f"trace: {run['trace']}\n"
    )
    return "\n".join(lines)

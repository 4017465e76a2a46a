"""python manage.py fusion ask "question" [--panel SLUG]

Runs one question through the real pipeline (the Celery worker, the models) and
prints each stage as it happens: the seats' answers, the analysis, the synthesis,
with costs and timings. The quickest way to see the main job.
"""

import asyncio
import json as json_module
import textwrap
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.engine import live
from chat.engine.admission import LimitReached
from chat.engine.runs import start_conversation
from chat.models import Answer, Run
from panels.models import Panel

CLI_USER = "fusion-cli"


class Command(BaseCommand):
    help = "Ask a panel a question through the worker and print every stage."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        ask = sub.add_parser("ask", help="Ask one question.")
        ask.add_argument("question")
        ask.add_argument("--panel", default="local", help="Panel slug (default: local).")
        ask.add_argument("--user", default=CLI_USER, help="Whose history the run joins.")
        ask.add_argument("--timeout", type=float, default=600, help="Seconds to wait.")
        ask.add_argument("--json", action="store_true", help="Print the run as JSON at the end.")

    def handle(self, *args, action, question, panel, user, timeout, json, **options):
        owner, _ = get_user_model().objects.get_or_create(username=user)
        found = Panel.objects.visible_to(owner).filter(slug=panel).first()
        if found is None:
            slugs = ", ".join(Panel.objects.visible_to(owner).values_list("slug", flat=True))
            raise CommandError(f"No panel {panel!r}. Panels you can use: {slugs or 'none'}.")
        if not question.strip():
            raise CommandError("The question is empty.")
        try:
            message = start_conversation(owner, found, question.strip(), via="cli")
        except LimitReached as refused:
            raise CommandError(refused.message) from None
        self.stdout.write(self.style.MIGRATE_HEADING(f"Run {message.run.pk} on panel {found}"))
        asyncio.run(self._follow(message.conversation.events_key, message.run.pk, timeout))
        run = Run.objects.get(pk=message.run.pk)
        self._print_result(run)
        if json:
            self.stdout.write(json_module.dumps(run_json(run), indent=2))
        if run.status != Run.Status.DONE:
            raise CommandError(f"The run ended {run.status}: {run.failure_detail}")

    async def _follow(self, conversation: str, run_id: int, timeout: float) -> None:
        """Print progress from the run's events until it is done. They are read from
        the oldest the conversation's stream keeps: the run started before this listened."""
        redis = live.redis_client()
        cursor = "0-0"
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    read = await live.read_events(redis, {conversation: cursor}, 5000)
                    if conversation not in read:
                        if not await _still_running(run_id):
                            return
                        continue
                    for cursor, event in read[conversation]:  # noqa: B007 (kept for the next read)
                        if event.get("run") == run_id and self._show(event, started):
                            return
        except TimeoutError:
            raise CommandError(f"No result within {timeout:.0f} s; the run goes on.") from None
        finally:
            await redis.aclose()

    def _show(self, event: dict, started: float) -> bool:
        """Print one event; True at the run's end."""
        elapsed = f"{time.monotonic() - started:6.1f}s"
        kind = event["type"]
        if kind == "run.status":
            self.stdout.write(f"{elapsed}  stage: {event['status']}")
        elif kind == "answer.started":
            self.stdout.write(f"{elapsed}  {event['role']}: {event['model']} started")
        elif kind in ("answer.done", "answer.failed"):
            stats = event["stats"]
            self.stdout.write(
                f"{elapsed}  {event['role']}: {stats['model']} {event['status']} "
                f"({stats['output_tokens']} tokens, {stats['cost']})"
            )
        elif kind == "decision":
            self.stdout.write(f"{elapsed}  decision: {event['decision']['summary']}")
        elif kind == "analysis.ready":
            state = "structured" if event["structured"] else "unstructured"
            self.stdout.write(f"{elapsed}  analysis ready ({state})")
        return kind == "run.done"

    def _print_result(self, run: Run) -> None:
        out, style = self.stdout, self.style
        for answer in run.answers.filter(role=Answer.Role.SEAT).order_by("position"):
            out.write(
                style.MIGRATE_HEADING(
                    f"\n── Seat {answer.position + 1}: {answer.model_name} [{answer.status}] "
                    f"{answer.cost_display}, {_secs(answer.latency_ms)}"
                )
            )
            out.write(_wrap(answer.text or answer.error))
        if run.analysis:
            out.write(style.MIGRATE_HEADING("\n── Analysis"))
            out.write(_analysis_text(run.analysis))
        elif run.analysis_raw:
            out.write(style.MIGRATE_HEADING("\n── Analysis (unstructured)"))
            out.write(_wrap(run.analysis_raw))
        synthesis = run.synthesis
        if synthesis is not None:
            out.write(
                style.MIGRATE_HEADING(
                    f"\n── Synthesis: {synthesis.model_name} [{synthesis.status}] "
                    f"{synthesis.cost_display}, {_secs(synthesis.latency_ms)}"
                )
            )
            out.write(_wrap(synthesis.text or synthesis.error))
        if run.decisions:
            out.write(style.MIGRATE_HEADING(f"\n── Decisions ({run.strategy})"))
            for decision in run.decisions:
                out.write(f"  {decision['ms'] / 1000:5.1f}s  {decision['summary']}")
        out.write(style.MIGRATE_HEADING("\n── Totals"))
        out.write(
            f"status {run.status}  cost {run.cost_display}  "
            f"(most expensive seat alone: {run.solo_cost_display})  stages {run.stage_ms}"
        )
        if run.failure_detail:
            out.write(style.ERROR(run.failure_detail))


def run_json(run: Run) -> dict:
    """The run as `--json` prints it: each answer's text and cost, the analysis, the
    strategy's decisions."""
    return {
        "run": run.pk,
        "status": run.status,
        "failure_reason": run.failure_reason,
        "analysis": run.analysis,
        "answers": [
            {
                "role": a.role,
                "model": a.model_name,
                "status": a.status,
                "text": a.text,
                "cost": a.cost_display,
            }
            for a in run.answers.all()
        ],
        "cost": run.cost_display,
        "strategy": run.strategy,
        "decisions": run.decisions,
    }


async def _still_running(run_id: int) -> bool:
    from chat.engine.db import in_db

    return await in_db(lambda: Run.objects.get(pk=run_id).is_active)


def _secs(ms: int | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"


def _wrap(text: str) -> str:
    return "\n".join(textwrap.fill(line, 100) if line else "" for line in text.splitlines())


def _analysis_text(analysis: dict) -> str:
    lines = []
    for point in analysis.get("consensus", []):
        lines.append(f"  agree: {point}")
    for item in analysis.get("contradictions", []):
        lines.append(f"  contradiction: {item['point']} -> {item['verdict']}")
    for item in analysis.get("unique_insights", []):
        lines.append(f"  insight ({item['label']}): {item['insight']}")
    for point in analysis.get("blind_spots", []):
        lines.append(f"  blind spot: {point}")
    for item in analysis.get("errors", []):
        lines.append(f"  error ({item['label']}): {item['error']}")
    for item in analysis.get("scores", []):
        lines.append(f"  score {item['label']}: {item['score']}/10 {item['reason']}")
    labels = analysis.get("labels", {})
    if labels:
        lines.append(f"  (labels → answers: {labels})")
    return "\n".join(lines) or "  (empty)"

"""python manage.py fusion_eval --dataset dev-short --panel local --systems seats,fusion,vote

Evaluates systems on a dataset through the real pipeline, in this process (no worker
needed), with a progress bar and ETA; prints the table with confidence intervals and
writes the report (Markdown, CSV, JSON, SVG) to --out. An interrupted evaluation
goes on with --resume ID; --calibrate ID sets the measured panel's seat weights (and a
gate's threshold) from a finished evaluation, as a new version of the panel.
"""

import csv
import shlex
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.engine import loop
from panels.models import CatalogModel, Panel
from panels.quotas import OverQuota

from ... import calibration, control, datasets, harness, report, systems
from ...models import Dataset, Evaluation

CLI_USER = "fusion-cli"
DEFAULT_SYSTEMS = "seats,fusion,vote"


class Command(BaseCommand):
    help = "Evaluate panels, strategies and models on a dataset; print and write the report."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", help="A dataset slug (see --list) or a JSONL file.")
        parser.add_argument("--panel", default="local", help="The panel the systems come from.")
        parser.add_argument(
            "--systems",
            default=DEFAULT_SYSTEMS,
            help="Comma-separated: seats, fusion, vote, route, gate, escalate, self-fusion, "
            f"panel:<slug>, model:<model id> (default: {DEFAULT_SYSTEMS}).",
        )
        parser.add_argument(
            "--limit", type=int, help="Evaluate N items spread evenly over the dataset."
        )
        parser.add_argument(
            "--skip-items",
            metavar="CSV",
            action="append",
            default=[],
            help="Leave out the items of this report's per-item CSV (its 'item' column), "
            "to complete a measurement made on part of the dataset; may be given again.",
        )
        parser.add_argument("--grader", help="Model id of the grader (rubric datasets).")
        parser.add_argument("--name", default="", help="A name for this evaluation.")
        parser.add_argument("--resume", type=int, help="Resume the evaluation with this id.")
        parser.add_argument(
            "--regrade",
            type=int,
            help="Grade the saved answers of this evaluation again (no model is called) "
            "and print its table.",
        )
        parser.add_argument(
            "--calibrate",
            type=int,
            help="Set the measured panel's seat weights (and a gate's threshold) from this "
            "evaluation's results, as a new panel version.",
        )
        parser.add_argument("--user", default=CLI_USER, help="Whose evaluation this is.")
        parser.add_argument("--out", help="Report directory (default .data/evals/<id>).")
        parser.add_argument("--list", action="store_true", help="List datasets and exit.")

    def handle(self, *args, **opts):
        owner, _ = get_user_model().objects.get_or_create(username=opts["user"])
        if opts["list"]:
            return self._list(owner)
        if opts["regrade"]:
            return self._regrade(owner, opts)
        if opts["calibrate"]:
            return self._calibrate(owner, opts["calibrate"])
        if opts["resume"]:
            evaluation = Evaluation.objects.filter(pk=opts["resume"], owner=owner).first()
            if evaluation is None:
                raise CommandError(f"No evaluation {opts['resume']} of user {owner.username}.")
            try:
                control.resume(evaluation, enqueue_it=False)  # this process runs it
            except control.Refused as exc:
                raise CommandError(str(exc)) from None
        else:
            evaluation = self._create(owner, opts)
        self.stdout.write(
            self.style.MIGRATE_HEADING(
                f"Evaluation {evaluation.pk}: {evaluation.name} ({evaluation.total} runs)"
            )
        )
        for system in evaluation.systems.all():
            self.stdout.write(f"  {system.position + 1}. {system.label}")
        status = loop.run(harness.evaluate(evaluation.pk, on_progress=self._progress_bar()))
        sys.stdout.write("\n")
        evaluation.refresh_from_db()
        if status is None:
            raise CommandError(
                f"Evaluation {evaluation.pk} is {evaluation.status} and not this command's to run "
                "(another process holds it, or it is finished)."
            )
        self._report(evaluation, opts)
        if evaluation.status != Evaluation.Status.DONE:
            raise CommandError(
                f"The evaluation is {evaluation.status}: {evaluation.detail} "
                f"(resume with --resume {evaluation.pk})"
            )

    def _regrade(self, owner, opts) -> None:
        evaluation = Evaluation.objects.filter(pk=opts["regrade"], owner=owner).first()
        if evaluation is None:
            raise CommandError(f"No evaluation {opts['regrade']} of user {owner.username}.")
        if evaluation.is_active:
            raise CommandError("It is still running: regrade it once it has stopped.")
        changed = loop.run(harness.regrade(evaluation.pk))
        self.stdout.write(f"Evaluation {evaluation.pk}: {changed} grade(s) changed.")
        self._report(evaluation, opts)

    def _calibrate(self, owner, pk: int) -> None:
        evaluation = Evaluation.objects.filter(pk=pk, owner=owner).first()
        if evaluation is None:
            raise CommandError(f"No evaluation {pk} of user {owner.username}.")
        try:
            version = calibration.calibrate(evaluation, owner)
        except (calibration.Unavailable, calibration.NotEditable) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{version.panel.name} version {version.number}: {version.changes}")

    def _report(self, evaluation: Evaluation, opts) -> None:
        summary = report.summarise(evaluation)
        self.stdout.write("\n" + report.markdown_table(summary) + "\n")
        out = Path(opts["out"] or f".data/evals/{evaluation.pk}")
        written = report.write(summary, out, command=_command_line())
        self.stdout.write(f"Report: {', '.join(str(p) for p in written)}")

    def _create(self, owner, opts) -> Evaluation:
        if not opts["dataset"]:
            raise CommandError(
                "Name a dataset: --dataset dev-short (see --list), or a .jsonl file."
            )
        dataset = self._dataset(owner, opts["dataset"])
        panel = Panel.objects.visible_to(owner).filter(slug=opts["panel"]).first()
        try:
            specs = systems.parse(opts["systems"].split(","), panel, owner)
        except systems.SystemsError as exc:
            if panel is None:
                raise CommandError(f"{exc} (no panel {opts['panel']!r} found)") from None
            raise CommandError(str(exc)) from None
        grader = None
        if opts["grader"]:
            grader = CatalogModel.objects.usable_by(owner).filter(model_id=opts["grader"]).first()
            if grader is None:
                raise CommandError(f"No catalog model {opts['grader']!r} to grade with.")
        try:
            return control.create(
                owner,
                dataset,
                specs,
                item_limit=opts["limit"],
                skip_keys=self._skipped(opts["skip_items"]),
                grader=grader,
                name=opts["name"],
                enqueue_it=False,  # this process runs it
            )
        except control.Refused as exc:
            raise CommandError(str(exc)) from None

    def _skipped(self, paths: list[str]) -> frozenset[str]:
        keys: set[str] = set()
        for path in paths:
            try:
                with open(path, newline="", encoding="utf-8") as file:
                    rows = list(csv.DictReader(file))
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
            if rows and "item" not in rows[0]:
                raise CommandError(f"{path} has no 'item' column: give a report's per-item CSV.")
            keys.update(row["item"] for row in rows)
        return frozenset(keys)

    def _dataset(self, owner, name: str) -> Dataset:
        path = Path(name)
        if path.suffix in (".jsonl", ".gz") and path.is_file():
            try:
                kind, items = datasets.read_path(path)
            except datasets.DatasetError as exc:
                raise CommandError(f"{path}: {exc}") from None
            try:
                return datasets.save(owner, path.stem, kind, items, source=path.name)
            except OverQuota as exc:
                raise CommandError(f"{path}: {exc}") from None
        found = Dataset.objects.filter(slug=name, owner=None).first() or (
            Dataset.objects.filter(slug=name, owner=owner).first()
        )
        if found is None:
            known = ", ".join(Dataset.objects.filter(owner=None).values_list("slug", flat=True))
            raise CommandError(f"No dataset {name!r}. Shipped: {known}; or give a .jsonl file.")
        return found

    def _list(self, owner) -> None:
        for dataset in Dataset.objects.filter(owner=None) | Dataset.objects.filter(owner=owner):
            self.stdout.write(
                f"{dataset.slug:24} {dataset.get_kind_display():28} {dataset.item_count:5} items"
            )

    def _progress_bar(self):
        last = [0.0]
        tty = self.stdout.isatty()

        def show(progress: harness.Progress) -> None:
            now = time.monotonic()
            final = progress.done >= progress.total
            if not tty and now - last[0] < 10 and not final:
                return  # a log, not a terminal: a line every ten seconds
            last[0] = now
            filled = int(30 * progress.percent / 100)
            eta = report.duration(progress.eta_s) if progress.eta_s is not None else "…"
            line = (
                f"[{'#' * filled}{'.' * (30 - filled)}] {progress.done}/{progress.total} "
                f"({progress.errors} errors)  ETA {eta}"
            )
            sys.stdout.write(("\r" + line) if tty else line + "\n")
            sys.stdout.flush()

        return show


def _command_line() -> str:
    """The command that made this report, for the top of report.md."""
    if sys.argv[1:2] == ["fusion_eval"]:
        return shlex.join(["python", "manage.py", *sys.argv[1:]])
    return "python manage.py fusion_eval (called from code)"

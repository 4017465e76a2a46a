"""The Evaluations pages: start one, watch it, read its report, export it."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from chat.models import Conversation
from panels.quotas import OverQuota

from . import calibration, control, datasets, report
from .forms import DatasetUploadForm, EvaluationForm, datasets_for
from .harness import is_interrupted, progress_of
from .models import DatasetItem, Evaluation, Result


def _own(request, pk: int) -> Evaluation:
    """Only its owner sees an evaluation; anyone else gets a 404, not a 403."""
    return get_object_or_404(
        Evaluation.objects.select_related("dataset"), pk=pk, owner=request.user
    )


def _index_context(request, form=None, upload=None) -> dict:
    return {
        "form": form or EvaluationForm(user=request.user),
        "upload": upload or DatasetUploadForm(),
        "evaluations": Evaluation.objects.filter(owner=request.user).select_related("dataset")[:50],
        "datasets": datasets_for(request.user),
        "concurrency": settings.EVAL_CONCURRENCY,
    }


@login_required
def index(request):
    # ?panel=<id> (from a panel's page) preselects it.
    panel = request.GET.get("panel", "")
    form = EvaluationForm(user=request.user, initial={"panel": panel} if panel.isdigit() else None)
    return render(request, "evals/index.html", _index_context(request, form=form))


@login_required
@require_POST
def create(request):
    form = EvaluationForm(request.POST, user=request.user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            evaluation = control.create(
                request.user,
                data["dataset"],
                data["specs"],
                item_limit=data["item_limit"],
                grader=data["grader"],
                name=data["name"],
            )
        except control.Refused as exc:
            form.add_error(None, str(exc))
        else:
            return redirect(evaluation)
    return render(request, "evals/index.html", _index_context(request, form=form), status=400)


@login_required
def detail(request, pk: int):
    evaluation = _own(request, pk)
    summary = report.summarise(evaluation)
    context = {
        "evaluation": evaluation,
        "progress": progress_of(evaluation),
        "calibration_unavailable": calibration.unavailable_reason(evaluation, request.user),
    }
    return render(request, "evals/detail.html", context | _table_context(summary))


@login_required
@require_POST
def calibrate(request, pk: int):
    """A new version of the measured panel, its weights (and gate) from these results."""
    evaluation = _own(request, pk)
    try:
        version = calibration.calibrate(evaluation, request.user)
    except calibration.NotEditable as exc:
        return HttpResponseForbidden(str(exc))
    except calibration.Unavailable as exc:
        messages.error(request, str(exc))
        return redirect(evaluation)
    messages.success(request, f"Calibrated: {version.panel.name} is now version {version.number}.")
    return redirect("panels:detail", slug=version.panel.slug)


@login_required
@require_POST
def delete(request, pk: int):
    """An evaluation, its results and the hidden conversations of its runs."""
    evaluation = _own(request, pk)
    if evaluation.is_active and not is_interrupted(evaluation):
        messages.error(request, "Stop the evaluation before deleting it.")
        return redirect(evaluation)
    Conversation.objects.filter(
        owner=request.user, hidden=True, messages__run__config__evaluation=evaluation.pk
    ).delete()
    evaluation.delete()
    messages.success(request, f"Deleted {evaluation.name}.")
    return redirect("evals:index")


@login_required
def progress(request, pk: int):
    return JsonResponse(progress_of(_own(request, pk)).as_dict())


@login_required
def table(request, pk: int):
    summary = report.summarise(_own(request, pk))
    return render(request, "evals/_table.html", _table_context(summary))


def _table_context(summary: report.Summary) -> dict:
    """What evals/_table.html shows: the page renders it, the page's script refreshes it."""
    return {
        "summary": summary,
        "header": report.header(summary),
        "table": report.labelled_rows(summary),
    }


@login_required
@require_POST
def stop(request, pk: int):
    evaluation = _own(request, pk)
    if control.stop(evaluation):
        messages.info(request, "Stopping: the runs in flight are cancelled; what finished is kept.")
    else:
        messages.error(request, f"This evaluation is {evaluation.status}: nothing to stop.")
    return redirect(evaluation)


@login_required
@require_POST
def resume(request, pk: int):
    evaluation = _own(request, pk)
    try:
        control.resume(evaluation)
    except control.Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, "Resumed: only what is not done yet runs.")
    return redirect(evaluation)


def _download(body: str, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def export_csv(request, pk: int):
    evaluation = _own(request, pk)
    body = report.results_csv(report.summarise(evaluation))
    return _download(body, "text/csv; charset=utf-8", f"evaluation-{pk}-results.csv")


@login_required
def export_json(request, pk: int):
    evaluation = _own(request, pk)
    body = json.dumps(report.as_json(report.summarise(evaluation)), indent=2, default=str)
    return _download(body, "application/json", f"evaluation-{pk}-summary.json")


@login_required
def chart(request, pk: int):
    svg = report.charts.scatter(report.summarise(_own(request, pk)))
    return HttpResponse(svg, content_type="image/svg+xml")


@login_required
def item(request, pk: int, item_pk: int):
    evaluation = _own(request, pk)
    found = get_object_or_404(DatasetItem, pk=item_pk, dataset=evaluation.dataset)
    results = {
        r.system_id: r
        for r in Result.objects.filter(evaluation=evaluation, item=found).select_related("run")
    }
    rows = [(system, results.get(system.pk)) for system in evaluation.systems.order_by("position")]
    return render(
        request,
        "evals/item.html",
        {"evaluation": evaluation, "item": found, "rows": rows, "kind": evaluation.dataset.kind},
    )


@login_required
@require_POST
def upload(request):
    # Refused by its declared size before Django reads (and spools) the body.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.EVAL_DATASET_MAX_BYTES + 64_000:
        refusal = (
            f"Nothing was imported: the upload is {declared / 1e6:,.1f} MB; the limit is "
            f"{settings.EVAL_DATASET_MAX_BYTES / 1e6:,.0f} MB. Split the file, or import a "
            "sample of it."
        )
        context = _index_context(request) | {"upload_refusal": refusal}
        return render(request, "evals/index.html", context, status=413)
    form = DatasetUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            datasets.check_room(request.user)  # before the file is read
            kind, items = datasets.read_upload(
                form.cleaned_data["file"], form.cleaned_data["kind"] or None
            )
            dataset = datasets.save(
                request.user, form.cleaned_data["name"], kind, items, source="upload"
            )
        except datasets.DatasetError as exc:
            form.add_error("file", f"Nothing was imported: {exc}")
        except OverQuota as exc:
            form.add_error(None, f"Nothing was imported: {exc}")
        else:
            messages.success(request, f"Imported {len(items)} items into {dataset.name}.")
            return redirect("evals:dataset", pk=dataset.pk)
    return render(request, "evals/index.html", _index_context(request, upload=form), status=400)


@login_required
def dataset(request, pk: int):
    found = datasets_for(request.user).filter(pk=pk).first()
    if found is None:
        raise Http404
    return render(
        request,
        "evals/dataset.html",
        {"dataset": found, "items": found.items.all()[:200]},
    )

"""The panel library: my panels, presets, the public gallery, a panel's page, the
builder, forks, recipes in and out."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Avg, Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import bounds, quotas, recipes, strategy_settings, versions
from .estimate import estimate
from .hooks import panel_evidence
from .models import CatalogModel, Panel
from .panel_forms import ImportForm, PanelForm, SeatFormSet
from .strategy_settings import SettingsError


def _reachable(request, slug: str) -> Panel:
    """A private panel of someone else is a 404, like a missing one."""
    return get_object_or_404(Panel.objects.reachable_by(request.user), slug=slug)


def _own(request, slug: str) -> Panel:
    return get_object_or_404(Panel, slug=slug, owner=request.user)


@login_required
def gallery(request):
    panels = Panel.objects.filter(visibility=Panel.Visibility.PUBLIC, owner__isnull=False)
    query = request.GET.get("q", "").strip()[:100]
    if query:
        panels = panels.filter(Q(name__icontains=query) | Q(description__icontains=query))
    order = {"new": "-created_at", "name": "name"}.get(request.GET.get("sort"), "-use_count")
    panels = panels.annotate(forks_count=Count("forks")).order_by(order)[:100]
    return render(request, "panels/gallery.html", {"panels": panels, "query": query})


@login_required
def detail(request, slug: str):
    panel = _reachable(request, slug)
    runs = panel.runs.filter(status="done")
    stats = runs.aggregate(avg_cost=Avg("cost_usd"), runs=Count("pk"))
    latencies = [r.stage_ms.get("total") for r in runs.only("stage_ms")[:500]]
    latencies = [ms for ms in latencies if ms]
    blind_votes = _win_rate(panel)
    return render(
        request,
        "panels/detail.html",
        {
            "panel": panel,
            "seats": panel.seats.select_related("model__provider"),
            "versions": panel.versions.all()[:20],
            "is_owner": panel.owner_id == request.user.pk,
            "forks": panel.forks.count(),
            "stats": stats,
            "blind_votes": blind_votes,
            "avg_latency_ms": sum(latencies) / len(latencies) if latencies else None,
            "estimate": estimate(panel, request.GET.get("prompt", "")[:20_000]),
            "evidence": panel_evidence(panel, request.user),
            "recent": panel.runs.filter(message__conversation__owner=request.user)
            .select_related("message__conversation")
            .order_by("-pk")[:10],
        },
    )


def _win_rate(panel: Panel) -> dict:
    """How often this recipe's synthesis won the blind votes on its runs."""
    counts = panel.runs.aggregate(
        total=Count("blind_votes"),
        wins=Count("blind_votes", filter=Q(blind_votes__answer__role="synthesizer")),
    )
    total = counts["total"]
    return {
        "total": total,
        "synthesis_wins": counts["wins"],
        "rate": round(100 * counts["wins"] / total) if total else None,
    }


def _strategy_fits(form: PanelForm, seats) -> bool:
    """The strategy's rules that need the seats (tags for route, tiers for escalate)."""
    strategy = form.cleaned_data["strategy"]
    try:
        strategy_settings.clean_settings(
            strategy, form.cleaned_data["strategy_settings"], seats.strategy_view()
        )
    except SettingsError as error:
        form.add_error(None, f"{strategy}: {error.message}.")
        return False
    return True


def _quorum_fits(form: PanelForm, seats) -> bool:
    """A quorum of at most the seats kept (the same bound a recipe's `min_answers` has)."""
    quorum = form.cleaned_data.get("min_answers")
    bound = bounds.quorum(len(seats.kept()))
    if quorum is not None and not bound.allows(quorum):
        form.add_error("min_answers", bound.refusal())
        return False
    return True


def _room_for_a_new_panel(form: PanelForm, panel: Panel) -> bool:
    if panel.pk:
        return True
    try:
        quotas.check_panels(panel.owner)
    except quotas.OverQuota as exc:
        form.is_valid()  # errors can only be added to a bound, cleaned form
        form.add_error(None, str(exc))
        return False
    return True


@login_required
@require_http_methods(["GET", "POST"])
def edit(request, slug: str | None = None):
    panel = _own(request, slug) if slug else Panel(owner=request.user)
    form = PanelForm(request.POST or None, instance=panel, user=request.user)
    seats = SeatFormSet(request.POST or None, instance=panel, form_kwargs={"user": request.user})
    if (
        request.method == "POST"
        and _room_for_a_new_panel(form, panel)
        and form.is_valid()
        and seats.is_valid()
        and _strategy_fits(form, seats)
        and _quorum_fits(form, seats)
    ):
        panel = form.save(commit=False)
        if not panel.slug:
            panel.slug = versions.new_slug(panel.name)
        panel.save()
        kept = [f for f in seats.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        kept.sort(key=lambda f: (f.cleaned_data.get("position") or 99, seats.forms.index(f)))
        seats.save(commit=False)
        for obj in seats.deleted_objects:
            obj.delete()
        for position, seat_form in enumerate(kept):
            seat = seat_form.save(commit=False)
            seat.panel, seat.position = panel, position
            seat.save()
        versions.record_version(panel)
        messages.success(request, f"Panel {panel} saved (version {panel.version}).")
        return redirect("panels:detail", slug=panel.slug)
    return render(
        request,
        "panels/edit.html",
        {
            "form": form,
            "seats": seats,
            "panel": panel if panel.pk else None,
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def fork(request, slug: str):
    try:
        result = versions.fork(_reachable(request, slug), request.user)
    except quotas.OverQuota as exc:
        messages.error(request, f"It was not copied: {exc}")
        return redirect("panels:detail", slug=slug)
    if isinstance(result, recipes.Imported):
        messages.error(
            request,
            "It cannot be copied as it is: these models are not "
            "reachable with your providers: " + "; ".join(result.missing),
        )
        return redirect("panels:detail", slug=slug)
    messages.success(request, f"{result} is yours now: edit it as you like.")
    return redirect("panels:detail", slug=result.slug)


@login_required
@require_POST
def delete(request, slug: str):
    panel = _own(request, slug)
    panel.delete()
    messages.success(request, f"Panel {panel} deleted. Past runs keep their configuration.")
    return redirect("panels:list")


@login_required
def export(request, slug: str):
    panel = _reachable(request, slug)
    body = json.dumps(recipes.to_recipe(panel), indent=2, ensure_ascii=False)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{panel.slug}.recipe.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def import_recipe(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            imported = recipes.resolve(
                recipes.parse(form.cleaned_data["recipe_text"]), request.user
            )
            if not imported.missing:
                panel = recipes.save_as_panel(
                    imported, request.user, versions.new_slug(imported.data["name"])
                )
                versions.record_version(panel)
                messages.success(request, f"Imported {panel}.")
                return redirect("panels:detail", slug=panel.slug)
            report = imported.missing
        except (recipes.RecipeError, quotas.OverQuota) as exc:
            form.add_error(None, str(exc))
    status = 400 if request.method == "POST" else 200
    return render(request, "panels/import.html", {"form": form, "missing": report}, status=status)


@login_required
def panel_list(request):
    models = CatalogModel.objects.usable_by(request.user).select_related("provider")
    return render(
        request,
        "panels/list.html",
        {
            "presets": Panel.objects.filter(owner=None).prefetch_related("seats__model"),
            "mine": request.user.panels.prefetch_related("seats__model"),
            "catalog": models.order_by("provider__name"),
        },
    )

"""Pages about one run: its trace, a comparison of its answers, the blind vote;
and the leaderboard the blind votes build."""

import hashlib
import hmac
import random
from collections import Counter

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from . import trace
from .models import Answer, BlindVote, Run


def _run_for(request, pk: int) -> Run:
    """Someone else's run is a 404, like a missing one."""
    return get_object_or_404(
        Run.objects.select_related("message__conversation").prefetch_related("answers"),
        pk=pk,
        message__conversation__owner=request.user,
    )


@login_required
def run_trace(request, pk: int):
    run = _run_for(request, pk)
    return render(request, "chat/trace.html", {"run": run, "trace": trace.build(run)})


@login_required
def compare(request, pk: int):
    run = _run_for(request, pk)
    candidates = [a for a in run.answers.all() if a.role != Answer.Role.JUDGE and a.text]
    chosen_ids = {int(i) for i in request.GET.getlist("answer") if i.isascii() and i.isdigit()}
    chosen = [a for a in candidates if a.pk in chosen_ids] or candidates[:2]
    labels = {v: k for k, v in ((run.analysis or {}).get("labels") or {}).items()}
    for answer in chosen:
        answer.label = labels.get(answer.pk, "")
    shown = {a.label for a in chosen if a.label}
    analysis = run.analysis or {}
    points = {
        "consensus": analysis.get("consensus", []),
        "contradictions": [
            {**c, "positions": {k: v for k, v in c["positions"].items() if k in shown}}
            for c in analysis.get("contradictions", [])
            if shown & set(c["positions"])
        ],
        "errors": [e for e in analysis.get("errors", []) if e["label"] in shown],
        "insights": [i for i in analysis.get("unique_insights", []) if i["label"] in shown],
    }
    return render(
        request,
        "chat/compare.html",
        {
            "run": run,
            "candidates": candidates,
            "chosen": chosen,
            "points": points,
        },
    )


def _ballot(run: Run, user_id: int) -> list[Answer]:
    """The synthesis and every seat that answered, in an order of their own per
    voter that nobody can work out (seeded with a secret), without names or ids:
    the vote is blind. Options are posted by their place on the ballot."""
    answers = [
        a
        for a in run.answers.all()
        if a.role != Answer.Role.JUDGE and a.status == Answer.Status.DONE
    ]
    answers.sort(key=lambda a: a.pk)
    seed = hmac.new(
        settings.SECRET_KEY.encode(), f"ballot:{run.pk}:{user_id}".encode(), hashlib.sha256
    ).hexdigest()
    random.Random(seed).shuffle(answers)
    return answers


@login_required
@require_http_methods(["GET", "POST"])
def blind_vote(request, pk: int):
    run = _run_for(request, pk)
    if run.status != Run.Status.DONE:
        raise Http404("Only a finished run can be voted on.")
    ballot = _ballot(run, request.user.pk)
    if request.method == "POST":
        choice = request.POST.get("choice", "")
        index = int(choice) - 1 if choice.isascii() and choice.isdigit() else -1
        picked = ballot[index] if 0 <= index < len(ballot) else None
        if picked is None:
            return render(
                request,
                "chat/blind_vote.html",
                {
                    "run": run,
                    "ballot": ballot,
                    "error": "Pick one of the answers.",
                },
                status=400,
            )
        BlindVote.objects.update_or_create(run=run, user=request.user, defaults={"answer": picked})
        return redirect("chat:blind_vote", pk=run.pk)
    mine = BlindVote.objects.filter(run=run, user=request.user).first()
    return render(request, "chat/blind_vote.html", {"run": run, "ballot": ballot, "mine": mine})


@login_required
def leaderboard(request):
    """How often each model, and the synthesis, was picked as the best answer."""
    blind_votes = BlindVote.objects.select_related(
        "answer__catalog_model__provider"
    ).prefetch_related("run__answers__catalog_model__provider")
    wins: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for v in blind_votes:
        for answer in v.run.answers.all():
            if answer.status != Answer.Status.DONE or answer.role == Answer.Role.JUDGE:
                continue
            seen[_contender(answer)] += 1
        wins[_contender(v.answer)] += 1
    rates = {name: round(100 * wins[name] / seen[name]) if seen[name] else 0 for name in seen}
    rows = [
        {"name": name, "wins": wins[name], "seen": seen[name], "rate": rates[name]}
        for name in sorted(seen, key=lambda name: (-rates[name], -wins[name]))
    ]
    return render(request, "chat/leaderboard.html", {"rows": rows, "total": len(blind_votes)})


def _contender(answer: Answer) -> str:
    if answer.role == Answer.Role.SYNTHESIZER:
        return "Synthesis"
    model = answer.catalog_model
    if model is not None and model.provider.owner_id is not None:
        return "A user's own model"  # the leaderboard is shared: keep private ids private
    return answer.model_name

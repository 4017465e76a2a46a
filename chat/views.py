from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from panels.models import CatalogModel, Panel

from .forms import MessageForm, NewConversationForm
from .models import Conversation, Message, Run
from .services import start_run, stop_run


def _conversation_for(request, pk: int) -> Conversation:
    """The one place ownership is checked: someone else's room is a 404, like a missing one."""
    return get_object_or_404(Conversation, pk=pk, owner=request.user)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _sidebar(request) -> dict:
    return {"conversations": request.user.conversations.all()[:100]}


def _turns(conversation: Conversation):
    return (
        Message.objects.filter(conversation=conversation)
        .select_related("run")
        .prefetch_related("run__answers")
    )


@require_GET
@login_required
def home(request):
    form = NewConversationForm(user=request.user)
    return render(request, "chat/home.html", {"form": form, **_sidebar(request)})


@require_POST
@login_required
def start(request):
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        return render(request, "chat/home.html", {"form": form, **_sidebar(request)}, status=400)
    answerer = form.cleaned_data["answerer"]
    conversation = Conversation.objects.create(
        owner=request.user,
        panel=answerer if isinstance(answerer, Panel) else None,
        model=answerer if isinstance(answerer, CatalogModel) else None,
    )
    start_run(conversation, form.cleaned_data["content"])
    return redirect(conversation)


@require_GET
@login_required
def room(request, pk: int):
    conversation = _conversation_for(request, pk)
    return render(
        request,
        "chat/room.html",
        {
            "conversation": conversation,
            "turns": _turns(conversation),
            "form": MessageForm(),
            **_sidebar(request),
        },
    )


@require_POST
@login_required
def send(request, pk: int):
    conversation = _conversation_for(request, pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"error": form.errors["content"][0]}, status=400)
        context = {
            "conversation": conversation,
            "turns": _turns(conversation),
            "form": form,
            **_sidebar(request),
        }
        return render(request, "chat/room.html", context, status=400)
    message = start_run(conversation, form.cleaned_data["content"])
    if _wants_json(request):
        message = _turns(conversation).get(pk=message.pk)
        html = render_to_string("chat/_turn.html", {"turn": message}, request=request)
        return JsonResponse({"html": html, "run": message.run.pk}, status=201)
    return redirect(conversation)


@require_POST
@login_required
def cancel(request, pk: int):
    """Stop a run: every upstream call is cancelled within a second."""
    run = get_object_or_404(Run, pk=pk, message__conversation__owner=request.user)
    stopped = stop_run(run)
    if _wants_json(request):
        return JsonResponse({"run": run.pk, "stopping": stopped})
    return redirect(run.message.conversation)


@require_POST
@login_required
def delete(request, pk: int):
    _conversation_for(request, pk).delete()
    return redirect("chat:home")

import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from limits.admission import LimitReached
from limits.spend import parse_limit
from panels.models import Panel

from .api.keys import TooManyKeys, create_key
from .engine.runs import StopUnavailable, count_use, start_conversation, start_run, stop_run
from .forms import MessageForm, NewConversationForm
from .models import ApiKey, Conversation, Message, Run


def _conversation_for(request, pk: int) -> Conversation:
    """The one place ownership is checked: someone else's room is a 404, like a missing one."""
    return get_object_or_404(Conversation, pk=pk, owner=request.user)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _sidebar(request) -> dict:
    conversations = request.user.conversations.filter(hidden=False)
    query = request.GET.get("q", "").strip()[:100]
    if query:
        conversations = conversations.filter(title__icontains=query)
    return {"conversations": conversations[:100], "query": query}


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
    try:
        message = start_conversation(
            request.user, form.cleaned_data["answerer"], form.cleaned_data["content"], via="room"
        )
    except LimitReached as refused:
        form.add_error("content", refused.message)  # the text stays in the box
        context = {"form": form, **_sidebar(request)}
        return render(request, "chat/home.html", context, status=refused.status)
    return redirect(message.conversation)


@require_GET
@login_required
def room(request, pk: int):
    return _room_page(request, _conversation_for(request, pk), MessageForm())


def _room_page(request, conversation: Conversation, form: MessageForm, status: int = 200):
    context = {
        "conversation": conversation,
        "turns": _turns(conversation),
        "form": form,
        **_sidebar(request),
    }
    return render(request, "chat/room.html", context, status=status)


@require_POST
@login_required
def send(request, pk: int):
    conversation = _conversation_for(request, pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"error": form.errors["content"][0]}, status=400)
        return _room_page(request, conversation, form, status=400)
    try:
        with transaction.atomic():
            # Lock the room: two sends at once must not both pass the check below.
            Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
            live = Run.objects.filter(message__conversation=conversation, status__in=Run.ACTIVE)
            content = form.cleaned_data["content"]
            message = None if live.exists() else start_run(conversation, content)
    except LimitReached as refused:
        if _wants_json(request):
            return JsonResponse(
                {"error": refused.message, "code": refused.code}, status=refused.status
            )
        form.add_error("content", refused.message)  # the text stays in the box
        return _room_page(request, conversation, form, status=refused.status)
    if message is None:
        # One answer at a time: the next turn's seats must see this one's answer.
        error = "Wait for the current answer, or stop it, before sending another message."
        if _wants_json(request):
            return JsonResponse({"error": error}, status=409)
        messages.error(request, error)
        return redirect(conversation)
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
    try:
        stopped = stop_run(run)
    except StopUnavailable as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=503)
        messages.error(request, str(exc))
        return redirect(run.message.conversation)
    if _wants_json(request):
        return JsonResponse({"run": run.pk, "stopping": stopped})
    return redirect(run.message.conversation)


@require_POST
@login_required
def rename(request, pk: int):
    conversation = _conversation_for(request, pk)
    title = " ".join(request.POST.get("title", "").split())[:120]
    if not title:
        messages.error(request, "A title cannot be empty.")
    else:
        conversation.title = title
        conversation.save(update_fields=["title", "updated_at"])
    return redirect(conversation)


@require_POST
@login_required
def share(request, pk: int):
    """Make (or revoke) a read-only link with an unguessable token."""
    conversation = _conversation_for(request, pk)
    if request.POST.get("action") == "revoke":
        conversation.share_token = None
        messages.success(request, "The share link was revoked: it no longer works.")
    else:
        conversation.share_token = conversation.share_token or secrets.token_urlsafe(24)
        messages.success(request, "Anyone with the link can now read this conversation.")
    conversation.save(update_fields=["share_token", "updated_at"])
    return redirect(conversation)


@require_GET
def shared(request, token: str):
    """The read-only view of a shared conversation; no login needed."""
    conversation = get_object_or_404(Conversation, share_token=token)
    return render(
        request, "chat/shared.html", {"conversation": conversation, "turns": _turns(conversation)}
    )


@require_POST
@login_required
def use_panel(request, slug: str):
    """Start a conversation answered by a panel the user may reach."""
    panel = get_object_or_404(Panel.objects.reachable_by(request.user), slug=slug)
    count_use(panel)
    return redirect(Conversation.objects.create(owner=request.user, panel=panel))


@never_cache
@require_POST
@login_required
def api_key_create(request):
    """Make an API key and show it, once: only its hash is kept."""
    name = " ".join(request.POST.get("name", "").split())[:80] or "API key"
    try:
        limit = parse_limit(request.POST.get("spend_limit", ""))
        record, key = create_key(request.user, name, spend_limit_usd=limit)
    except (TooManyKeys, ValueError) as refused:
        messages.error(request, str(refused))
        return redirect("panels:api_keys")
    return render(request, "chat/api_key_created.html", {"record": record, "key": key})


@require_POST
@login_required
def api_key_revoke(request, pk: int):
    record = get_object_or_404(ApiKey, pk=pk, user=request.user)
    if record.revoked_at is None:
        record.revoked_at = timezone.now()
        record.save(update_fields=["revoked_at"])
    messages.success(request, f"Key {record} revoked: it no longer works.")
    return redirect("panels:api_keys")


@require_POST
@login_required
def delete(request, pk: int):
    _conversation_for(request, pk).delete()
    return redirect("chat:home")

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

from chat.engine.admission import LimitReached
from limits.spend import parse_limit
from panels.models import Panel

from .api.keys import TooManyKeys, create_key
from .engine.runs import StopUnavailable, count_use, start_conversation, start_run, stop_run
from .forms import MessageForm, NewConversationForm
from .models import ApiKey, Conversation, Message, Run, with_versions
from .search import QUERY_MAX_CHARS, search


def _conversation_for(request, pk: int) -> Conversation:
    """The one place ownership is checked: someone else's conversation is a 404, like a
    missing one."""
    return get_object_or_404(Conversation, pk=pk, owner=request.user)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _sidebar(request) -> dict:
    conversations = request.user.conversations.filter(hidden=False)
    query = request.GET.get("q", "").strip()[:100]
    if query:
        conversations = conversations.filter(title__icontains=query)
    return {"conversations": conversations[:100], "query": query}


def _turns(conversation: Conversation) -> list[Message]:
    """The turns of the conversation's current branch, each marked with its versions."""
    tree = conversation.message_tree()
    branch = (
        Message.objects.filter(pk__in=conversation.branch_ids(tree))
        .select_related("run")
        .prefetch_related("run__answers")
        .order_by("pk")
    )
    return with_versions(list(branch), tree)


@require_GET
@login_required
def home(request):
    form = NewConversationForm(user=request.user)
    return render(request, "chat/home.html", {"form": form, **_sidebar(request)})


@require_GET
@login_required
def search_page(request):
    """The user's conversations whose questions or answers hold the words typed."""
    query = request.GET.get("q", "")[:QUERY_MAX_CHARS].replace("\x00", "").strip()
    everything = request.user.conversations.filter(hidden=False)
    context = {
        "hits": search(request.user, query),
        "titled": everything.filter(title__icontains=query)[:20] if query else [],
        "query": query,
        "conversations": everything[:100],  # the sidebar, unfiltered: the results are beside it
    }
    return render(request, "chat/search.html", context)


@require_POST
@login_required
def start(request):
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        return render(request, "chat/home.html", {"form": form, **_sidebar(request)}, status=400)
    try:
        message = start_conversation(
            request.user,
            form.cleaned_data["answerer"],
            form.cleaned_data["content"],
            via="conversation",
            consult_panel=form.cleaned_data["consult_panel"],
        )
    except LimitReached as refused:
        form.add_error("content", refused.message)  # the text stays in the box
        context = {"form": form, **_sidebar(request)}
        return render(request, "chat/home.html", context, status=refused.status)
    return redirect(message.conversation)


@require_GET
@login_required
def conversation(request, pk: int):
    return _conversation_page(request, _conversation_for(request, pk), MessageForm())


def _conversation_page(request, conversation: Conversation, form: MessageForm, status: int = 200):
    context = {
        "conversation": conversation,
        "turns": _turns(conversation),
        "form": form,
        **_sidebar(request),
    }
    return render(request, "chat/conversation.html", context, status=status)


@require_POST
@login_required
def send(request, pk: int):
    conversation = _conversation_for(request, pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"error": form.errors["content"][0]}, status=400)
        return _conversation_page(request, conversation, form, status=400)
    return _start_turn(request, conversation, form, form.cleaned_data["content"])


def _start_turn(request, conversation: Conversation, form: MessageForm, content: str, **where):
    """Start a run on `content`: a new turn, or (`parent=`) a new version of one."""
    try:
        with transaction.atomic():
            # Lock the conversation: two sends at once must not both pass the check below.
            Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
            live = Run.objects.filter(message__conversation=conversation, status__in=Run.ACTIVE)
            message = None if live.exists() else start_run(conversation, content, **where)
    except LimitReached as refused:
        if _wants_json(request):
            return JsonResponse(
                {"error": refused.message, "code": refused.code}, status=refused.status
            )
        form.add_error("content", refused.message)  # the text stays in the box
        return _conversation_page(request, conversation, form, status=refused.status)
    if message is None:
        # One answer at a time: the next turn's seats must see this one's answer.
        error = "Wait for the current answer, or stop it, before sending another message."
        if _wants_json(request):
            return JsonResponse({"error": error}, status=409)
        messages.error(request, error)
        return redirect(conversation)
    if _wants_json(request):
        turn = next(t for t in _turns(conversation) if t.pk == message.pk)
        html = render_to_string("chat/_turn.html", {"turn": turn}, request=request)
        return JsonResponse({"html": html, "run": message.run.pk}, status=201)
    if where:
        return redirect(f"{conversation.get_absolute_url()}#turn-{message.pk}")
    return redirect(conversation)


def _message_for(request, pk: int, message: int) -> Message:
    return get_object_or_404(Message, pk=message, conversation=_conversation_for(request, pk))


@require_POST
@login_required
def edit(request, pk: int, message: int):
    """Ask an edited question again: a new version of the turn, the old one kept."""
    edited = _message_for(request, pk, message)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"error": form.errors["content"][0]}, status=400)
        return _conversation_page(request, edited.conversation, form, status=400)
    content = form.cleaned_data["content"]
    return _start_turn(request, edited.conversation, form, content, parent=edited.parent)


@require_POST
@login_required
def regenerate(request, pk: int, message: int):
    """Ask the same question again: a new version of the turn, the old one kept."""
    asked = _message_for(request, pk, message)
    form = MessageForm({"content": asked.content})
    return _start_turn(request, asked.conversation, form, asked.content, parent=asked.parent)


@require_POST
@login_required
def show_version(request, pk: int, message: int):
    """Show another version of a turn; later turns follow it, and a reload keeps it."""
    chosen = _message_for(request, pk, message)
    chosen.conversation.choose_version(chosen)
    if _wants_json(request):
        return JsonResponse({"shown": chosen.pk})
    return redirect(f"{chosen.conversation.get_absolute_url()}#turn-{chosen.pk}")


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

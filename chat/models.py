"""Conversations, the user's messages, and the runs that answer them.

The messages of a conversation form a tree: each names the message it follows
(`Message.parent`), and an edited or regenerated question is a sibling of the one
it replaces, a second *version* of that turn. The conversation's *current branch*
is the path from its first turn to `Conversation.current_leaf`, the versions the
person last chose; pages, exports and the history a model sees follow it.

One user message starts one run; a run holds one or more answers: one per seat of
the panel (a single model is a panel of one seat), then the judge's (one more after
a repair attempt) and the synthesizer's.

Long on purpose: the conversation's data (Conversation, Message, Run, Answer,
BlindVote, ApiKey) is one model, migrated together.
"""

import asyncio
from collections.abc import Callable

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.html import escape

from panels.pricing import Cost

# Renders an answer's Markdown to sanitised HTML. The chat app sets it in its
# AppConfig.ready (chat/markdown.py): the models, which the engine imports, never
# import the rendering, so the engine stays away from the conversation's pages.
_answer_renderer: Callable[[str], str] | None = None


class RendererMissing(LookupError):
    """An answer's HTML was asked for before the chat app set its renderer."""

    def __init__(self) -> None:
        super().__init__(
            "No renderer for answers' HTML: the chat app sets it in ChatConfig.ready "
            "(chat/apps.py). Is 'chat' in INSTALLED_APPS, and was django.setup() called?"
        )


def set_answer_renderer(render: Callable[[str], str]) -> None:
    """Name the function that turns an answer's Markdown into HTML (chat/apps.py)."""
    global _answer_renderer
    _answer_renderer = render


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def render_answer(text: str) -> str:
    if _answer_renderer is None:
        raise RendererMissing()
    return _answer_renderer(text)


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    # Set: anyone with the link /s/<token>/ may read the conversation (not write).
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # What answers in this conversation: a panel, or a single model on its own.
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(
        "panels.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Or an ad-hoc panel made for one API request (OpenRouter Fusion's plugin, an
    # inline recipe): its frozen configuration, so later turns in the conversation keep it.
    adhoc_config = models.JSONField(null=True, blank=True)
    # With `model`: the panel that model may consult ("May consult the panel"): it is
    # given the fusion tool and decides per question whether to convene this panel.
    # Empty: the model answers alone (a removed panel leaves it answering alone).
    consult_panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A run of the evaluation harness (evals/): kept for its record, not listed
    # among the owner's conversations.
    hidden = models.BooleanField(default=False)
    # The last message of the current branch: the versions shown, kept so a reload
    # shows them again. Empty: the newest message (a conversation before versions).
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def message_tree(self) -> dict[int, int | None]:
        """Every message's parent, by message id, in the order they were sent: one
        query of two integers a message, whatever the length of the texts."""
        return dict(self.messages.order_by("pk").values_list("pk", "parent_id"))

    def branch_ids(self, tree: dict[int, int | None] | None = None) -> list[int]:
        """The ids of the current branch's messages, first turn first."""
        tree = self.message_tree() if tree is None else tree
        leaf = self.current_leaf_id if self.current_leaf_id in tree else None
        if leaf is None and tree:
            leaf = max(tree)
        path = []
        while leaf is not None:
            path.append(leaf)
            leaf = tree[leaf]
        path.reverse()
        return path

    def choose_version(self, message: "Message") -> None:
        """Show `message`'s version of its turn: the branch goes through it and on
        along its newest versions of each later turn."""
        children: dict[int | None, list[int]] = {}
        for pk, parent in self.message_tree().items():
            children.setdefault(parent, []).append(pk)
        leaf = message.pk
        while children.get(leaf):
            leaf = children[leaf][-1]
        self.current_leaf_id = leaf
        self.save(update_fields=["current_leaf"])

    def __str__(self):
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self):
        return reverse("chat:conversation", args=[self.pk])

    @property
    def answered_by(self) -> str:
        if self.panel is not None:  # no query when panel_id is None
            return f"Panel: {self.panel.name}"
        if self.adhoc_config:
            return f"Ad-hoc panel ({len(self.adhoc_config.get('seats', []))} seats)"
        if self.model is None:
            return "nothing (removed)"
        if self.consult_panel is not None:
            return f"{self.model.display_name} · may consult {self.consult_panel.name}"
        return self.model.display_name

    @property
    def events_key(self) -> str:
        """The Redis Stream of this conversation's events, which every tab showing it follows."""
        return f"fr:conversation:{self.pk}:events"


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    content = models.TextField()
    # The message this one follows; empty for a first turn. Messages with the same
    # parent are versions of one turn (an edit or a regeneration), oldest first.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Not stored: where this message stands among its turn's versions, set by
    # with_versions() for the conversation's page (1-based, and their ids).
    version: int = 1
    version_ids: tuple[int, ...] = ()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return self.content[:60]

    @property
    def version_count(self) -> int:
        return max(1, len(self.version_ids))

    @property
    def previous_version(self) -> int | None:
        return self.version_ids[self.version - 2] if self.version > 1 else None

    @property
    def next_version(self) -> int | None:
        return self.version_ids[self.version] if self.version < len(self.version_ids) else None


def with_versions(messages: list[Message], tree: dict[int, int | None]) -> list[Message]:
    """Mark each message of a branch with its place among its turn's versions."""
    siblings: dict[int | None, list[int]] = {}
    for pk, parent in tree.items():
        siblings.setdefault(parent, []).append(pk)
    for message in messages:
        message.version_ids = tuple(siblings.get(message.parent_id, [message.pk]))
        message.version = message.version_ids.index(message.pk) + 1
    return messages


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker…"
        ROUTING = "routing", "The router is reading the question…"
        PANEL = "panel", "The panel is answering…"
        JUDGING = "judging", "The judge is comparing the answers…"
        SYNTHESIZING = "synthesizing", "Writing the final answer…"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Failure(models.TextChoices):
        ALL_SEATS_FAILED = "all_seats_failed"
        SYNTHESIS_FAILED = "synthesis_failed"
        CANCELLED = "cancelled"
        WORKER_LOST = "worker_lost"
        QUEUE_UNREACHABLE = "queue_unreachable"
        INTERNAL = "internal_error"
        NO_MODEL = "no_model"
        # The judge gave nothing usable; the run still answers with the panel's best.
        # (Names as in the hosted original's failure_reason, plus runaway.)
        JUDGE_UPSTREAM_ERROR = "judge_upstream_error"
        JUDGE_EMPTY = "judge_empty_completion"
        JUDGE_RUNAWAY = "judge_runaway"  # cut off: a loop, its deadline or its token allowance
        # Its spend crossed the user's budget (limits/): stopped, answers so far kept.
        BUDGET = "budget_exceeded"
        # The final answer was not the JSON the API caller asked for (response_format).
        FORMAT_MISMATCH = "format_mismatch"
        # The final answer wrote text where the caller's tool_choice demanded a call.
        TOOL_CHOICE_UNMET = "tool_choice_unmet"

    ACTIVE = (Status.QUEUED, Status.ROUTING, Status.PANEL, Status.JUDGING, Status.SYNTHESIZING)

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="run")
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # The panel's configuration when the run started (panels.models.Panel.snapshot).
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=24, choices=Failure.choices, blank=True)
    failure_detail = models.TextField(blank=True)
    # The judge's analysis: structured JSON when it validated, else raw text.
    analysis = models.JSONField(null=True, blank=True)
    analysis_raw = models.TextField(blank=True)
    analysis_structured = models.BooleanField(default=False)
    # Totals: USD, empty when any call's price is unknown; milliseconds by stage.
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    solo_cost_usd = models.DecimalField(
        max_digits=14,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="What the most expensive seat would have cost answering alone.",
    )
    stage_ms = models.JSONField(default=dict, blank=True)
    # Every automatic decision the strategy made, in order, explained in words
    # (chat/engine/events.py Decision): routed, voted, gated, escalated.
    decisions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Run {self.pk} ({self.status})"

    @property
    def conversation(self) -> Conversation:
        return self.message.conversation

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def is_fusion(self) -> bool:
        return bool(self.config.get("judge"))

    @property
    def consults(self) -> bool:
        """One model that may consult a panel (the fusion server tool: the chatroom's
        "May consult the panel", or an API request's tool): its answer is shown, the
        panel it convened (if it did) beneath."""
        server = self.config.get("server_tools") or {}
        return not self.is_fusion and "fusion" in server.get("names", [])

    @property
    def consulted_seats(self) -> list["Answer"]:
        """The seats of the panel the model convened: every seat answer but its own."""
        own = self.final_answer
        return [a for a in self.seat_answers if own is None or a.pk != own.pk]

    def answers_in(self, role: str) -> list["Answer"]:
        return [a for a in self.answers.all() if a.role == role]

    @property
    def seat_answers(self) -> list["Answer"]:
        return self.answers_in(Answer.Role.SEAT)

    @property
    def judge_answers(self) -> list["Answer"]:
        return self.answers_in(Answer.Role.JUDGE)

    @property
    def sources(self) -> list[dict]:
        """Every page the panel's tools found or read, once each: the final answer's
        sources (the synthesizer read the seats' answers built on them)."""
        seen, found = set(), []
        for answer in self.seat_answers:
            for source in answer.tool_sources:
                if source["url"] not in seen:
                    seen.add(source["url"])
                    found.append(source)
        return found

    @property
    def router_answers(self) -> list["Answer"]:
        return self.answers_in(Answer.Role.ROUTER)

    @property
    def strategy(self) -> str:
        return (self.config.get("strategy") or {}).get("name", "fusion")

    @property
    def synthesis(self) -> "Answer | None":
        found = self.answers_in(Answer.Role.SYNTHESIZER)
        return found[-1] if found else None  # the last: a retry's (client_tools.unmet)

    @property
    def cost_display(self) -> str:
        return Cost(self.cost_usd, "sum").display()

    @property
    def solo_cost_display(self) -> str:
        return Cost(self.solo_cost_usd, "sum").display()

    @property
    def final_answer(self) -> "Answer | None":
        """The answer the user reads: the synthesis, or the lone seat's answer."""
        answers = list(self.answers.all())
        for answer in reversed(answers):  # the last synthesis: a retry's, when there was one
            if answer.role == Answer.Role.SYNTHESIZER:
                return answer
        seats = [a for a in answers if a.role == Answer.Role.SEAT]
        if not self.is_fusion and self.config.get("server_tools"):
            # One model with server tools: the panel it consulted answered after it.
            return min(seats, key=lambda a: a.position, default=None)
        return seats[0] if len(seats) == 1 else None


class Answer(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        STREAMING = "streaming"
        DONE = "done"
        FAILED = "failed"
        LATE = "late"  # cancelled at the deadline once the quorum had answered
        CANCELLED = "cancelled"
        SKIPPED = "skipped"  # the strategy did not need this seat (gate, route, escalate)

    class Role(models.TextChoices):
        SEAT = "seat"
        ROUTER = "router"
        JUDGE = "judge"
        SYNTHESIZER = "synthesizer"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="answers")
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.SEAT)
    position = models.PositiveSmallIntegerField(default=0)
    # The part of the question this seat answered, when a router split it.
    subquestion = models.TextField(blank=True)
    # Every tool call it made, in order (chat/engine/events.py ToolStep).
    tool_steps = models.JSONField(default=list, blank=True)
    # Calls of an API caller's own tools, which the caller runs: [{"id", "name",
    # "arguments"}] (chat/engine/client_tools.py). Only a final answer has them.
    client_tool_calls = models.JSONField(default=list, blank=True)
    # The messages sent, for the judge and the synthesizer: the prompt is part of
    # the record (and of the prompt-injection tests).
    prompt = models.JSONField(null=True, blank=True)
    # The model asked for; model_key/model_name say who really answered (a
    # fallback may have), and stay readable if the catalog entry is deleted.
    catalog_model = models.ForeignKey(
        "panels.CatalogModel", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_key = models.CharField(max_length=200)
    model_name = models.CharField(max_length=200)
    provider_name = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    text = models.TextField(blank=True)
    # The text as sanitised HTML, rendered when the text is saved (see save()): a
    # snapshot, an event or a page view never renders, so a long answer costs its
    # rendering once, in the saving thread, never on Daphne's or the worker's loop.
    html = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False)
    # USD; empty when unknown (a model without a known price), never a silent zero.
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    cost_source = models.CharField(max_length=16, blank=True)
    # Every attempt: retries, fallbacks, cooldown skips (panels.calls.Attempt).
    attempts = models.JSONField(default=list, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # When its call started, in ms after the run started: places it on the trace.
    started_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Not stored: the judge's label for this answer, set by the compare page.
    label: str = ""

    class Meta:
        ordering = ["run", "position", "pk"]

    # The text `html` was rendered from; None: not rendered yet (a new row, or an
    # old one saved before the field existed).
    _html_source: str | None = None

    def __str__(self):
        return f"Answer {self.pk} by {self.model_key} ({self.status})"

    @classmethod
    def from_db(cls, db, field_names, values):
        answer = super().from_db(db, field_names, values)
        loaded = answer.__dict__
        if "text" in loaded and "html" in loaded and (answer.html or not answer.text):
            answer._html_source = answer.text
        return answer

    def save(self, *args, **kwargs):
        """Saving new text renders it: the one place an answer's HTML is made."""
        update_fields = kwargs.get("update_fields")
        if (update_fields is None or "text" in update_fields) and self.text != self._html_source:
            self.html = render_answer(self.text) if self.text else ""
            self._html_source = self.text
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "html"}
        super().save(*args, **kwargs)

    @property
    def body_html(self) -> str:
        """The HTML to show; a row whose text never passed save() (written with
        QuerySet.update, say) is rendered here rather than shown empty. Never on an
        event loop: Markdown of a long answer would hold every socket of the process,
        so there (a path that forgot fill_html) the text is shown escaped, unrendered."""
        if self.html or not self.text:
            return self.html
        if _on_event_loop():
            return f'<p class="unrendered">{escape(self.text)}</p>'
        return render_answer(self.text)

    def fill_html(self) -> None:
        """Render a row saved without HTML, and store it (only where nobody stored it
        since). Called from a database thread, before an event loop reads body_html."""
        if self.html or not self.text or self.is_live:
            return
        self.html = render_answer(self.text)
        self._html_source = self.text
        Answer.objects.filter(pk=self.pk, html="", text=self.text).update(html=self.html)

    @property
    def tool_sources(self) -> list[dict]:
        """The pages its tools found or read, once each, in order (http(s) only)."""
        seen, sources = set(), []
        for step in self.tool_steps:
            for source in step.get("sources", []):
                url = source.get("url", "")
                if url.startswith(("http://", "https://")) and url not in seen:
                    seen.add(url)
                    sources.append(source)
        return sources

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.STREAMING)

    @property
    def cost_display(self) -> str:
        return Cost(self.cost_usd, self.cost_source or "unknown").display()


class BlindVote(models.Model):
    """A user's blind pick of the best answer of a run: the synthesis or a seat.
    Not the *vote* strategy (chat/engine/strategies/vote.py), where seats outvote each other."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="blind_votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="blind_votes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "user"], name="one_blind_vote_per_run")
        ]

    def __str__(self):
        return f"{self.user} picked {self.answer.model_name} in run {self.run_id}"


class ApiKey(models.Model):
    """A key for the OpenAI-compatible API. Only its hash is stored; the key itself
    is shown once, when created. The prefix identifies it in lists and logs."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Most this key may spend on the site's models in a calendar month; empty: only
    # its owner's own budgets apply.
    spend_limit_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

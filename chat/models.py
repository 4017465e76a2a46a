"""Conversations, the user's messages, and the runs that answer them.

One user message starts one run; a run holds one or more answers: one per seat of
the panel (a single model is a panel of one seat), then the judge's (one more after
a repair attempt) and the synthesizer's.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse

from chat import markdown
from panels.pricing import Cost


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    # Set: anyone with the link /s/<token>/ may read the conversation (not write).
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # What answers in this room: a panel, or a single model on its own.
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(
        "panels.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Or an ad-hoc panel made for one API request (OpenRouter Fusion's plugin, an
    # inline recipe): its frozen configuration, so later turns in the room keep it.
    adhoc_config = models.JSONField(null=True, blank=True)
    # A run of the evaluation harness (evals/): kept for its record, not listed
    # among the owner's conversations.
    hidden = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self):
        return reverse("chat:room", args=[self.pk])

    @property
    def answered_by(self) -> str:
        if self.panel_id:
            return f"Panel: {self.panel.name}"
        if self.adhoc_config:
            return f"Ad-hoc panel ({len(self.adhoc_config.get('seats', []))} seats)"
        return self.model.display_name if self.model_id else "nothing (removed)"

    @property
    def events_key(self) -> str:
        """The Redis Stream of this room's events, which every tab showing it follows."""
        return f"fr:room:{self.pk}:events"


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    content = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return self.content[:60]


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
        JUDGE_RUNAWAY = "judge_runaway"  # cut off: a loop, its deadline or its budget
        # Its spend crossed the user's budget (limits/): stopped, answers so far kept.
        BUDGET = "budget_exceeded"
        # The final answer was not the JSON the API caller asked for (response_format).
        FORMAT_MISMATCH = "format_mismatch"

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
        return found[0] if found else None

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
        for answer in answers:
            if answer.role == Answer.Role.SYNTHESIZER:
                return answer
        seats = [a for a in answers if a.role == Answer.Role.SEAT]
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
            self.html = markdown.render(self.text) if self.text else ""
            self._html_source = self.text
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "html"}
        super().save(*args, **kwargs)

    @property
    def body_html(self) -> str:
        """The HTML to show; a row whose text never passed save() (written with
        QuerySet.update, say) is rendered here rather than shown empty."""
        if self.html or not self.text:
            return self.html
        return markdown.render(self.text)

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


class Vote(models.Model):
    """A user's blind pick of the best answer of a run: the synthesis or a seat."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="votes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "user"], name="one_vote_per_run")]

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

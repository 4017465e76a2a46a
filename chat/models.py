"""Conversations, the user's messages, and the runs that answer them.

One user message starts one run; a run holds one or more answers. Today a run has
a single answer from one model; the fusion pipeline adds seats, a judge and a
synthesizer as further answers of the same run.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    model = models.ForeignKey(
        "panels.CatalogModel",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Model that answers in this room.",
    )
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
    def group_name(self) -> str:
        """The channel-layer group every tab showing this room joins."""
        return f"conversation.{self.pk}"


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
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="run")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.TextField(blank=True)
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
    def final_answer(self) -> "Answer | None":
        answers = list(self.answers.all())
        return answers[-1] if answers else None


class Answer(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        STREAMING = "streaming"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="answers")
    position = models.PositiveSmallIntegerField(default=0)
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]

    def __str__(self):
        return f"Answer {self.pk} by {self.model_key} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.STREAMING)

    @property
    def cost_display(self) -> str:
        from panels.pricing import Cost

        return Cost(self.cost_usd, self.cost_source or "unknown").display()

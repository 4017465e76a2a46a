"""What one user may consume, and what they spent.

`Limits` rows override the site's settings: the row without a user is everyone's
default, a row with a user is that user's own; an empty field inherits. `Spend` is
the ledger budgets are counted from: one row per call on the site's providers,
kept when the conversation it paid for is deleted.
"""

from django.conf import settings
from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce

_HELP_INHERIT = "Empty: the default (the everyone row, else the site's setting)."


def _usd_field(label: str) -> models.DecimalField:
    return models.DecimalField(
        label, max_digits=10, decimal_places=4, null=True, blank=True, help_text=_HELP_INHERIT
    )


def _count_field(label: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(label, null=True, blank=True, help_text=_HELP_INHERIT)


class Limits(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="limits",
        help_text="Empty: these are everyone's defaults.",
    )
    runs_per_minute = _count_field("runs a minute")
    concurrent_runs = _count_field("runs at once")
    api_keys = _count_field("active API keys")
    message_chars = _count_field("characters a message")
    run_budget_usd = _usd_field("USD a run")
    daily_budget_usd = _usd_field("USD a day")
    monthly_budget_usd = _usd_field("USD a month")
    unlimited_spend = models.BooleanField(
        default=False, help_text="No spend budgets at all for this user (or for everyone)."
    )

    class Meta:
        verbose_name_plural = "limits"
        constraints = [
            # One row per user, and one (user-less) row of defaults.
            models.UniqueConstraint(Coalesce("user", Value(0)), name="one_limits_row_per_user")
        ]

    def __str__(self):
        return f"Limits of {self.user}" if self.user_id else "Limits of everyone (defaults)"


class Spend(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="spends"
    )
    api_key = models.ForeignKey(
        "chat.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="spends"
    )
    run = models.ForeignKey(
        "chat.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="spends"
    )
    model_name = models.CharField(max_length=200, blank=True)
    usd = models.DecimalField(max_digits=14, decimal_places=8)
    # The price was unknown: counted at the catalog's dearest prices, never as free.
    assumed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
        ]

    def __str__(self):
        return f"${self.usd} by {self.user} ({self.model_name})"

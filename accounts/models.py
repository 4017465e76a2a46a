"""Invite codes: with SIGNUP=invite, an account needs one. Staff make them in the
admin; the code is shown once and only its hash is kept, like an API key."""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F
from django.utils import timezone


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def _a_week_from_now() -> datetime:
    return timezone.now() + timedelta(days=7)


_USED_UP = "This invite code has already been used; ask an administrator for a new one."


class InviteRefused(Exception):
    """An invite code that cannot be used, with what to tell the person."""


class Invite(models.Model):
    code_hash = models.CharField(max_length=64, unique=True, editable=False)
    note = models.CharField(
        max_length=200, blank=True, help_text="Who it is for; only staff see it."
    )
    max_uses = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="How many accounts it may create.",
    )
    uses = models.PositiveIntegerField(default=0, editable=False)
    expires_at = models.DateTimeField(default=_a_week_from_now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.note or f"Invite of {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def state(self) -> str:
        if self.uses >= self.max_uses:
            return "used up"
        if self.expires_at <= timezone.now():
            return "expired"
        return "usable"

    def new_code(self) -> str:
        """Gives the invite a fresh code and returns it: the only time it is readable."""
        code = secrets.token_urlsafe(12)
        self.code_hash = _digest(code)
        return code

    @classmethod
    def usable(cls, code: str) -> "Invite":
        """The invite with this code if it can still be used, else InviteRefused
        saying why not. Counts nothing (see redeem)."""
        invite = cls.objects.filter(code_hash=_digest(code)).first()
        if invite is None:
            raise InviteRefused(
                "This invite code is not valid. Check it, or ask an administrator for one."
            )
        if invite.expires_at <= timezone.now():
            raise InviteRefused(
                f"This invite code expired on {invite.expires_at:%d %B %Y}; "
                "ask an administrator for a new one."
            )
        if invite.uses >= invite.max_uses:
            raise InviteRefused(_USED_UP)
        return invite

    @classmethod
    def redeem(cls, code: str) -> "Invite":
        """Counts one use of the invite, or raises InviteRefused saying why not. Call it
        in the transaction that creates the account, so a failed sign-up uses nothing."""
        invite = cls.usable(code)
        # One conditional update: two people racing for the last use cannot both win.
        counted = cls.objects.filter(
            pk=invite.pk, uses__lt=F("max_uses"), expires_at__gt=timezone.now()
        ).update(uses=F("uses") + 1)
        if not counted:
            raise InviteRefused(_USED_UP)
        return invite

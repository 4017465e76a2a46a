"""The log-in forms (the site's and the admin's) with the throttle, and the sign-up
form with its invite code."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from . import throttle
from .addresses import client_address
from .models import Invite, InviteRefused


class LoginForm(AuthenticationForm):
    """Django's log-in form, counted by the throttle before the password is checked:
    while a username or an address is throttled even the right password is refused."""

    refusal: throttle.Refusal | None = None

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if not username or not password:
            return super().clean()  # a field is missing: nothing was tried
        # Django's log-in views always pass the request; without one, no address is known.
        address = client_address(self.request) if self.request else "unknown"
        attempt = throttle.login_attempt(username, address)
        if attempt.refusal:
            self.refusal = attempt.refusal
            raise ValidationError(attempt.refusal.message, code="throttled")
        cleaned = super().clean()  # a wrong password raises, and stays counted
        attempt.succeeded()
        return cleaned


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's log-in (staff only), on the same counts as the site's: the admin
    is no second door for a guesser."""


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change, its old password counted as a log-in attempt of the
    account's username: a session left open is no door for guessing the password."""

    refusal: throttle.Refusal | None = None

    def __init__(
        self, user: User, *args: Any, request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        address = client_address(self.request) if self.request else "unknown"
        attempt = throttle.login_attempt(self.user.get_username(), address)
        if attempt.refusal:
            self.refusal = attempt.refusal
            raise ValidationError(attempt.refusal.message, code="throttled")
        old = super().clean_old_password()  # a wrong password raises, and stays counted
        attempt.succeeded()
        return old


class SignupForm(UserCreationForm):
    invite = forms.CharField(
        label="Invite code",
        max_length=100,
        help_text="Sign-ups on this server need an invite code from an administrator.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if settings.SIGNUP != "invite":
            del self.fields["invite"]

    def clean_invite(self) -> str:
        code = self.cleaned_data["invite"].strip()
        try:
            Invite.usable(code)
        except InviteRefused as refused:
            raise ValidationError(str(refused), code="invite") from None
        return code

    def save(self, commit: bool = True) -> User:
        """Creates the account and counts one use of its invite, in one transaction:
        raises InviteRefused when the last use went to someone else meanwhile."""
        with transaction.atomic():
            if "invite" in self.fields:
                Invite.redeem(self.cleaned_data["invite"])
            return super().save(commit=commit)

"""Log in (the site's and the admin's) and sign up, behind their throttles."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import throttle
from .addresses import client_address
from .forms import LoginForm, SignupForm, ThrottledPasswordChangeForm
from .models import InviteRefused


def _refusal_status(
    response: HttpResponseBase, refusal: throttle.Refusal | None
) -> HttpResponseBase:
    if refusal is not None:
        response.status_code = refusal.status
        if refusal.retry_after:
            response["Retry-After"] = str(refusal.retry_after)
    return response


def with_refusal_status(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """A log-in view answers 429 (or 503) with Retry-After when its form was refused by
    the throttle, instead of Django's 200 for any invalid form."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        return _refusal_status(response, getattr(form, "refusal", None))

    return wrapped


login_view = with_refusal_status(
    auth_views.LoginView.as_view(authentication_form=LoginForm, redirect_authenticated_user=True)
)


class _PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ThrottledPasswordChangeForm
    success_url = "/accounts/?password=changed"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}


password_change = with_refusal_status(_PasswordChangeView.as_view())
# The admin's own log-in page, with its own template and staff check; the form is
# AdminLoginForm (set in accounts/admin.py).
admin_login = with_refusal_status(admin.site.login)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponseBase:
    if request.user.is_authenticated:
        return redirect("chat:home")
    if settings.SIGNUP == "closed":
        return render(request, "registration/signup.html", {"closed": True}, status=403)
    initial = {"invite": request.GET.get("invite", "")}
    if request.method == "POST":
        refusal = throttle.signup_refusal(client_address(request))
        if refusal:
            # Not validated: a throttled client learns nothing, not even a taken username.
            form = SignupForm(initial={**initial, "username": request.POST.get("username", "")})
            context = {"form": form, "refusal": refusal.message}
            return _refusal_status(render(request, "registration/signup.html", context), refusal)
    form = SignupForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            user = form.save()
        except InviteRefused as refused:  # its last use went to someone else meanwhile
            form.add_error("invite", str(refused))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:home")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/signup.html", {"form": form}, status=status)

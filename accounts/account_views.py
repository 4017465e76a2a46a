"""The account page: conversations and what the user spent against their limits.
Sign up and log in are in views.py (with their throttles); log out and the
password change are Django's own views."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from limits.summary import spend_summary


@login_required
def account(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated  # login_required let only a signed-in user through
    return render(
        request,
        "registration/account.html",
        {
            "conversation_count": user.conversations.filter(hidden=False).count(),
            **spend_summary(user),
        },
    )

"""The account page. Sign up and log in are in the accounts app (with their
throttles); log out and the password change are Django's own views."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from limits.summary import spend_summary


@login_required
def account(request):
    return render(
        request,
        "registration/account.html",
        {
            "conversation_count": request.user.conversations.filter(hidden=False).count(),
            **spend_summary(request.user),
        },
    )

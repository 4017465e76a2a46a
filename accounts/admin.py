from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse

from .forms import AdminLoginForm
from .models import Invite

# The admin's log-in goes through the same throttle as the site's.
admin.site.login_form = AdminLoginForm


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "uses", "max_uses", "expires_at", "created_by")
    fields = ("note", "max_uses", "expires_at")

    def save_model(self, request: HttpRequest, obj: Invite, form: forms.Form, change: bool) -> None:
        if not change:
            code = obj.new_code()
            assert isinstance(request.user, User)  # the admin is staff-only
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            link = request.build_absolute_uri(f"{reverse('signup')}?invite={code}")
            # Only the hash is kept: this message is the one time the code is readable.
            messages.warning(
                request,
                f"The invite code is {code} (sign-up link: {link}). Copy it now: it is "
                "stored hashed and cannot be shown again.",
            )
            return
        super().save_model(request, obj, form, change)

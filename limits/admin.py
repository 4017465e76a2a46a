from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .models import Limits, Spend


@admin.register(Limits)
class LimitsAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "runs_per_minute",
        "concurrent_runs",
        "api_keys",
        "run_budget_usd",
        "daily_budget_usd",
        "monthly_budget_usd",
        "unlimited_spend",
    )
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)


@admin.register(Spend)
class SpendAdmin(admin.ModelAdmin):
    """The ledger is a record: read it, never edit it."""

    list_display = ("created_at", "user", "model_name", "usd", "assumed", "api_key", "run")
    list_filter = ("assumed",)
    search_fields = ("user__username", "model_name")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class LimitsInline(admin.StackedInline):
    model = Limits
    can_delete = True
    extra = 0
    max_num = 1
    verbose_name_plural = "Limits and budgets (empty fields: everyone's defaults)"


User = get_user_model()
if admin.site.is_registered(User):
    base = type(admin.site._registry[User])
    admin.site.unregister(User)
else:
    base = UserAdmin


@admin.register(User)
class UserWithLimitsAdmin(base):  # type: ignore[misc,valid-type]
    inlines = [*getattr(base, "inlines", ()), LimitsInline]

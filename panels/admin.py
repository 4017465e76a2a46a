from django.contrib import admin, messages

from .models import CatalogModel, Provider
from .openrouter import SyncError, sync_models
from .provider_forms import ProviderForm


class CatalogModelInline(admin.TabularInline):
    model = CatalogModel
    extra = 0
    fields = (
        "model_id",
        "display_name",
        "context_length",
        "input_price",
        "output_price",
        "supports_tools",
        "tool_calls_in_text",
        "is_active",
    )
    show_change_link = True


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "owner", "source", "key_hint", "is_active")
    list_filter = ("kind", "source", "is_active")
    search_fields = ("name", "base_url", "owner__username")
    readonly_fields = ("source", "key_hint", "created_at", "updated_at")
    fields = (
        "name",
        "kind",
        "base_url",
        "owner",
        "api_key",
        "key_hint",
        "is_active",
        "source",
        "created_at",
        "updated_at",
    )
    raw_id_fields = ("owner",)
    actions = ["sync_openrouter_models"]
    inlines = [CatalogModelInline]

    @admin.action(description="Sync models and prices from the provider's /models list")
    def sync_openrouter_models(self, request, queryset):
        for provider in queryset:
            try:
                created, updated = sync_models(provider)
            except SyncError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"{provider}: {created} models added, {updated} updated.")


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = (
        "display_name",
        "model_id",
        "provider",
        "context_length",
        "input_price",
        "output_price",
        "supports_tools",
        "source",
        "is_active",
    )
    list_filter = ("provider", "source", "supports_tools", "is_active")
    search_fields = ("model_id", "display_name")

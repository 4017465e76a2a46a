from django.contrib import admin

from .models import Dataset, Evaluation, Result, System


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "item_count", "owner", "created_at"]
    list_filter = ["kind"]


class SystemInline(admin.TabularInline):
    model = System
    fields = ("position", "label", "kind", "panel", "panel_version")
    readonly_fields = ("position", "label", "kind", "panel", "panel_version")
    extra = 0
    can_delete = False


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "dataset", "status", "total", "created_at"]
    list_filter = ["status"]
    inlines = [SystemInline]
    readonly_fields = ["attempts", "busy_s", "started_at", "finished_at"]


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ["evaluation", "system", "item", "status", "correct", "score", "latency_ms"]
    list_filter = ["status"]
    raw_id_fields = ["evaluation", "system", "item", "run"]

from django.contrib import admin

from .models import Answer, BlindVote, Conversation, Message, Run


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("content", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "model", "updated_at")
    raw_id_fields = ("owner", "model")
    search_fields = ("title", "owner__username")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "created_at")
    search_fields = ("content",)


class AnswerInline(admin.StackedInline):
    model = Answer
    extra = 0
    raw_id_fields = ("catalog_model",)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "message", "status", "created_at", "finished_at")
    list_filter = ("status",)
    inlines = [AnswerInline]


@admin.register(Answer)
class AnswerAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "model_name", "status", "output_tokens", "cost_usd", "latency_ms")
    list_filter = ("status", "model_key")


@admin.register(BlindVote)
class BlindVoteAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "user", "answer", "created_at")
    raw_id_fields = ("run", "user", "answer")

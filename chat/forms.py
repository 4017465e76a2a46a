from django import forms
from django.conf import settings

from panels.models import CatalogModel


class MessageForm(forms.Form):
    content = forms.CharField(
        strip=True,
        required=False,  # checked in clean_content, to word the error ourselves
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Ask anything…"}),
    )

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not content:
            raise forms.ValidationError("Write a message first: it is empty.")
        limit = settings.MESSAGE_MAX_CHARS
        if len(content) > limit:
            raise forms.ValidationError(
                f"Your message is {len(content):,} characters long; the limit is {limit:,}. "
                "Shorten it or split it into several messages."
            )
        return content


class NewConversationForm(MessageForm):
    model = forms.ModelChoiceField(
        queryset=CatalogModel.objects.none(),
        empty_label=None,
        error_messages={"invalid_choice": "That model is not available; pick one from the list."},
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        self.fields["model"].queryset = usable.order_by("provider__source", "display_name")
        self.fields["model"].label_from_instance = lambda m: (
            m.display_name if m.provider.source == "local" else f"{m.display_name} · {m.provider}"
        )
        default = usable.filter(model_id=settings.DEFAULT_CHAT_MODEL).first()
        if default is not None:
            self.fields["model"].initial = default.pk

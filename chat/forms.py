from django import forms
from django.conf import settings

from panels import local_models


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
    model = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(m.key, m.display_name) for m in local_models.enabled()]
        self.fields["model"].choices = choices
        if settings.DEFAULT_CHAT_MODEL in dict(choices):
            self.fields["model"].initial = settings.DEFAULT_CHAT_MODEL

    def clean_model(self) -> str:
        key = self.cleaned_data["model"]
        if local_models.get(key) is None:
            raise forms.ValidationError("That model is not available; pick one from the list.")
        return key

from django import forms
from django.conf import settings

from panels.models import CatalogModel, Panel


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
        # Its length is one of the user's limits, checked where every run starts
        # (limits/admission.py), whichever door the message came through.
        return content


class NewConversationForm(MessageForm):
    """A new room answered by a panel ("panel:<id>") or by one model ("model:<id>")."""

    answerer = forms.ChoiceField(label="Answered by", choices=())

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        panels = Panel.objects.visible_to(user).order_by("owner", "name")
        models = CatalogModel.objects.usable_by(user).select_related("provider")
        models = models.order_by("provider__source", "display_name")
        self.fields["answerer"].choices = [
            ("Panels", [(f"panel:{p.pk}", f"{p.name} ({p.seats.count()} seats)") for p in panels]),
            ("Single models", [(f"model:{m.pk}", _model_label(m)) for m in models]),
        ]
        default = panels.filter(slug=settings.DEFAULT_PANEL).first()
        if default is not None:
            self.fields["answerer"].initial = f"panel:{default.pk}"

    def clean_answerer(self) -> Panel | CatalogModel:
        kind, _, pk = self.cleaned_data["answerer"].partition(":")
        found = None
        if kind == "panel" and pk.isdigit():
            found = Panel.objects.reachable_by(self.user).filter(pk=pk).first()
        elif kind == "model" and pk.isdigit():
            found = CatalogModel.objects.usable_by(self.user).filter(pk=pk).first()
        if found is None:
            raise forms.ValidationError("That panel or model is not available; pick another.")
        return found


def _model_label(model: CatalogModel) -> str:
    if model.provider.source == "local":
        return model.display_name
    return f"{model.display_name} · {model.provider}"

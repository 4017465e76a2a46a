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
        # (chat/engine/admission.py), whichever door the message came through.
        return content


class NewConversationForm(MessageForm):
    """A new conversation answered by a panel ("panel:<id>") or by one model ("model:<id>").
    One model may be let to consult a panel ("May consult the panel"): it is given the
    fusion tool and decides per question whether to convene that panel, by default
    the site's default panel (DEFAULT_PANEL, the Local preset)."""

    answerer = forms.ChoiceField(label="Answered by", choices=())
    consult = forms.BooleanField(label="May consult the panel", required=False)
    consult_panel = forms.ChoiceField(
        label="Panel to consult",
        choices=(),
        required=False,
        error_messages={
            "invalid_choice": "Panel to consult: that panel is not one you may use; pick another."
        },
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        panels = Panel.objects.visible_to(user).order_by("owner", "name")
        models = CatalogModel.objects.usable_by(user).select_related("provider")
        models = models.order_by("provider__source", "display_name")
        answerer = self.fields["answerer"]
        assert isinstance(answerer, forms.ChoiceField), answerer
        answerer.choices = [
            ("Panels", [(f"panel:{p.pk}", f"{p.name} ({p.seats.count()} seats)") for p in panels]),
            ("Single models", [(f"model:{m.pk}", _model_label(m)) for m in models]),
        ]
        consult_panel = self.fields["consult_panel"]
        assert isinstance(consult_panel, forms.ChoiceField), consult_panel
        consult_panel.choices = [(str(p.pk), p.name) for p in panels]
        default = panels.filter(slug=settings.DEFAULT_PANEL).first()
        if default is not None:
            self.fields["answerer"].initial = f"panel:{default.pk}"
            consult_panel.initial = str(default.pk)

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

    def clean_consult_panel(self) -> Panel | None:
        """The panel to consult: one listed for this user (a preset, their own, a public
        one; the choices refuse any other), checked again against what they may reach;
        empty means the room's default panel."""
        chosen = self.cleaned_data.get("consult_panel") or ""
        if not chosen:
            return Panel.objects.reachable_by(self.user).filter(slug=settings.DEFAULT_PANEL).first()
        found = None
        if chosen.isdigit():
            found = Panel.objects.reachable_by(self.user).filter(pk=chosen).first()
        if found is None:
            raise forms.ValidationError(
                "Panel to consult: that panel is not one you may use; pick another."
            )
        return found

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if not cleaned.get("consult"):
            cleaned["consult_panel"] = None
            self.errors.pop("consult_panel", None)  # not asked for: its choice is moot
            return cleaned
        answerer = cleaned.get("answerer")
        if isinstance(answerer, Panel):
            self.add_error(
                "consult",
                "May consult the panel: this is for one model, which decides per question "
                "whether to ask a panel. Choose a single model in “Answered by”, or turn it off.",
            )
        elif isinstance(answerer, CatalogModel) and not answerer.supports_tools:
            self.add_error(
                "consult",
                f"May consult the panel: {answerer.display_name} cannot call tools (its "
                "catalog entry has no tool support), so it could never ask the panel. "
                "Choose a model that supports tools, or turn it off.",
            )
        elif "consult_panel" in cleaned and cleaned["consult_panel"] is None:
            self.add_error(
                "consult_panel",
                f"Panel to consult: the default panel “{settings.DEFAULT_PANEL}” is not "
                "available here; pick a panel.",
            )
        return cleaned


def _model_label(model: CatalogModel) -> str:
    if model.provider.source == "local":
        return model.display_name
    return f"{model.display_name} · {model.provider}"

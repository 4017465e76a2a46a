from typing import cast

from django import forms
from django.db.models import Q

from panels import strategy_settings
from panels.models import CatalogModel, Panel

from . import systems
from .models import Dataset

FROM_PANEL = [
    (systems.SEATS, "Each seat alone"),
    *[(name, f"The panel with strategy: {name}") for name in strategy_settings.NAMES],
    (systems.SELF_FUSION, "Self-fusion (the first seat's model on every seat)"),
]


def datasets_for(user):
    return Dataset.objects.filter(Q(owner=None) | Q(owner=user))


class ModelChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return obj.display_name


class GraderChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.display_name


class EvaluationForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    item_limit = forms.IntegerField(
        label="Items",
        required=False,
        min_value=1,
        help_text="Empty: every item. A number: that many, spread evenly over the dataset.",
    )
    panel = forms.ModelChoiceField(
        queryset=Panel.objects.none(),
        required=False,
        help_text="The panel the systems below come from.",
    )
    from_panel = forms.MultipleChoiceField(
        label="Systems from the panel",
        choices=FROM_PANEL,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        initial=[systems.SEATS, strategy_settings.FUSION, strategy_settings.VOTE],
    )
    panels = forms.ModelMultipleChoiceField(
        label="Also these saved panels, as saved",
        queryset=Panel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    models = ModelChoices(
        label="Also these models alone",
        queryset=CatalogModel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    grader = GraderChoice(
        queryset=CatalogModel.objects.none(),
        required=False,
        help_text="Rubric datasets only: the model that grades, never one of the systems' calls.",
    )
    name = forms.CharField(max_length=160, required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        panels = Panel.objects.visible_to(user).order_by("owner_id", "name")
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        choices = {
            "dataset": datasets_for(user),
            "panel": panels,
            "panels": panels,
            "models": usable,
            "grader": usable,
        }
        for name, queryset in choices.items():
            cast(forms.ModelChoiceField, self.fields[name]).queryset = queryset
        self.fields["panel"].initial = panels.filter(owner=None, slug="local").first()
        self.fields["dataset"].initial = choices["dataset"].filter(slug="dev-short").first()

    def clean(self):
        data = super().clean() or {}
        names = list(data.get("from_panel") or [])
        if names and not data.get("panel"):
            self.add_error("panel", "Choose the panel these systems come from.")
            return data
        names += [f"panel:{p.slug}" for p in data.get("panels") or []]
        names += [f"model:{m.model_id}" for m in data.get("models") or []]
        try:
            data["specs"] = systems.parse(names, data.get("panel"), self.user)
        except systems.SystemsError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class DatasetUploadForm(forms.Form):
    name = forms.CharField(max_length=120)
    file = forms.FileField(help_text="JSONL, one item per line (see the formats below).")
    kind = forms.ChoiceField(
        choices=[("", "Read it off the first line"), *Dataset.Kind.choices], required=False
    )

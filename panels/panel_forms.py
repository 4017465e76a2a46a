"""The no-code builder: a panel's settings and its seats, as plain forms."""

from django import forms
from django.forms import BaseInlineFormSet, inlineformset_factory

from .models import CatalogModel, Panel, Seat
from .recipes import MAX_SEATS


def _label(model: CatalogModel) -> str:
    price = (
        "free"
        if model.input_price == 0
        else (
            "price unknown"
            if not model.price_known
            else f"${model.input_price:g}/${model.output_price:g} per M"
        )
    )
    return f"{model.display_name} · {model.provider} · {model.context_length:,} ctx · {price}"


class _ModelChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return _label(obj)


class PanelForm(forms.ModelForm):
    class Meta:
        model = Panel
        fields = [
            "name",
            "description",
            "visibility",
            "judge",
            "synthesizer",
            "synthesizer_fallback",
            "judge_drafts",
            "min_answers",
            "deadline_s",
        ]
        field_classes = {
            "judge": _ModelChoice,
            "synthesizer": _ModelChoice,
            "synthesizer_fallback": _ModelChoice,
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        labels = {"deadline_s": "Deadline (seconds)", "min_answers": "Quorum (answers)"}
        help_texts = {
            "synthesizer": "Empty: the judge's model writes the final answer too.",
            "min_answers": "Empty: wait for every seat. Else the judge starts once this many "
            "answered and the deadline passed.",
            "deadline_s": "Seconds. Seats still running then are cut off, once the quorum "
            "has answered.",
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        for name in ("judge", "synthesizer", "synthesizer_fallback"):
            self.fields[name].queryset = usable
        self.fields["judge"].required = True
        self.fields["deadline_s"].min_value = 1

    def clean_min_answers(self):
        value = self.cleaned_data["min_answers"]
        if value is not None and value < 1:
            raise forms.ValidationError("At least one answer is needed before the judge starts.")
        return value


class SeatForm(forms.ModelForm):
    fallbacks = forms.ModelMultipleChoiceField(
        queryset=CatalogModel.objects.none(),
        required=False,
        help_text="Tried in order when the seat's model fails before answering.",
    )

    class Meta:
        model = Seat
        fields = [
            "position",
            "model",
            "temperature",
            "max_tokens",
            "system_prompt",
            "first_token_timeout_s",
            "idle_timeout_s",
            "total_timeout_s",
        ]
        field_classes = {"model": _ModelChoice}
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 2}),
            "position": forms.NumberInput(attrs={"min": 1, "class": "narrow"}),
        }
        labels = {
            "position": "Order",
            "first_token_timeout_s": "First token (s)",
            "idle_timeout_s": "Idle gap (s)",
            "total_timeout_s": "Total (s)",
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        self.fields["model"].queryset = usable
        self.fields["model"].required = True
        self.fields["fallbacks"].queryset = usable
        self.fields["position"].required = False
        if self.instance.pk:
            self.initial["fallbacks"] = self.instance.fallback_ids
            self.initial["position"] = self.instance.position + 1
        else:
            self.initial["position"] = None  # new seats go last unless numbered

    def clean_temperature(self):
        value = self.cleaned_data["temperature"]
        if value is not None and not 0 <= value <= 2:
            raise forms.ValidationError("Temperature goes from 0 to 2.")
        return value

    def save(self, commit=True):
        seat = super().save(commit=False)
        seat.fallback_ids = [m.pk for m in self.cleaned_data["fallbacks"]]
        if commit:
            seat.save()
        return seat


class BaseSeatFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not kept:
            raise forms.ValidationError("A panel needs at least one seat.")
        if len(kept) > MAX_SEATS:
            raise forms.ValidationError(f"A panel has at most {MAX_SEATS} seats.")


SeatFormSet = inlineformset_factory(
    Panel,
    Seat,
    form=SeatForm,
    formset=BaseSeatFormSet,
    extra=1,
    can_delete=True,
    max_num=MAX_SEATS,
    validate_max=True,
)


class ImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="A recipe .json file…")
    text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="…or paste the recipe here.",
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > 256 * 1024:
                raise forms.ValidationError(
                    f"The file is {upload.size:,} bytes; a recipe is at most 262,144."
                )
            data["recipe_text"] = upload.read()
        elif data.get("text", "").strip():
            data["recipe_text"] = data["text"]
        else:
            raise forms.ValidationError("Choose a recipe file or paste one.")
        return data

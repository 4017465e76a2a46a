"""The no-code builder: a panel's settings and its seats, as plain forms.

Long on purpose: the builder's panel form, its seat formset and the strategy's settings
validate together (a seat's weight counts only under vote or verify)."""

from typing import Any, TypedDict

from django import forms
from django.forms import BaseInlineFormSet, inlineformset_factory

from . import bounds, strategy_settings
from .models import CatalogModel, Panel, Seat
from .recipes import MAX_SEATS
from .strategy_settings import SettingsError


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


def _offer(field: forms.Field, usable: Any) -> None:
    """Narrow a model choice field to the models this user may use."""
    # The fields are declared by the ModelForm's Meta; the type says which.
    assert isinstance(field, forms.ModelChoiceField), field
    field.queryset = usable


class _ModelChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return _label(obj)


class _CategoriesField(forms.CharField):
    """Comma-separated words in the form, a list everywhere else."""

    def to_python(self, value):
        text = super().to_python(value)
        return [w.strip().lower() for w in text.split(",") if w.strip()] if text else None


TOOL_CHOICES = [
    ("web_search", "Web search"),
    ("web_fetch", "Read web pages"),
    ("run_python", "Run Python in a sandbox"),
]


class PanelForm(forms.ModelForm):
    tools = forms.MultipleChoiceField(
        choices=TOOL_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Tools the seats may use",
        help_text="Each seat with tools on (and a model that can call tools) may use these, "
        "up to its own limit of calls per answer.",
    )
    excluded_domains = _CategoriesField(
        required=False,
        label="Never search or fetch",
        help_text="Domains, comma-separated (e.g. a benchmark's site): left out of search "
        "results and never fetched, subdomains included.",
    )

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
            "judge_tools",
            "min_answers",
            "deadline_s",
            "strategy",
            "router",
        ]
        field_classes = {
            "judge": _ModelChoice,
            "synthesizer": _ModelChoice,
            "synthesizer_fallback": _ModelChoice,
            "router": _ModelChoice,
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        labels = {
            "deadline_s": "Deadline (seconds)",
            "min_answers": "Quorum (answers)",
            "strategy": "How the panel answers",
            "router": "Router model",
        }
        help_texts = {
            "router": "Reads each question and names its category. Empty: the judge's model.",
            "synthesizer": "Empty: the judge's model writes the final answer too.",
            "min_answers": "Empty: wait for every seat. Else the judge starts once this many "
            "answered and the deadline passed.",
            "deadline_s": "Seconds. Seats still running then are cut off, once the quorum "
            "has answered.",
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        for name in ("judge", "synthesizer", "synthesizer_fallback", "router"):
            _offer(self.fields[name], usable)
        self.fields["judge"].required = True
        _bounded(self.fields["deadline_s"], bounds.deadline())
        # The seats are another form: the builder view narrows this to their number.
        _bounded(self.fields["min_answers"], bounds.quorum(MAX_SEATS))
        self.fields["strategy"].required = False  # absent: fusion, as before strategies
        if self.instance.pk:
            self.initial["tools"] = list(self.instance.tools)
            self.initial["excluded_domains"] = ", ".join(self.instance.excluded_domains)
        saved = self.instance.strategy_settings if self.instance.pk else {}
        for strategy, settings in strategy_settings.SETTINGS.items():
            for setting in settings:
                name = setting_field(strategy, setting.name)
                self.fields[name] = _setting_field(setting)
                if strategy == self.instance.strategy and setting.name in saved:
                    self.initial[name] = _shown(setting, saved[setting.name])

    # The builder's sections, by exact field name (a template's `in "…"` tests
    # substrings, and put "tools" in the judge's section because of "judge_tools").
    def _bound(self, *names: str) -> list:
        return [self[name] for name in names]

    @property
    def about_fields(self) -> list:
        return self._bound("name", "description", "visibility")

    @property
    def tool_fields(self) -> list:
        return self._bound("tools", "excluded_domains")

    @property
    def judge_fields(self) -> list:
        return self._bound(
            "judge",
            "synthesizer",
            "synthesizer_fallback",
            "judge_drafts",
            "judge_tools",
            "min_answers",
            "deadline_s",
        )

    def settings_fields(self, strategy: str) -> list:
        """The bound fields of one strategy's settings, for the template."""
        return [self[setting_field(strategy, s.name)] for s in strategy_settings.SETTINGS[strategy]]

    def strategy_sections(self) -> list[tuple[str, str, list]]:
        return [
            (name, label, self.settings_fields(name))
            for name, label in strategy_settings.CHOICES
            if strategy_settings.SETTINGS[name] or name == strategy_settings.ROUTE
        ]

    def clean(self):
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        strategy = data["strategy"] = data.get("strategy") or strategy_settings.FUSION
        raw = {}
        for setting in strategy_settings.SETTINGS.get(strategy, ()):
            value = data.get(setting_field(strategy, setting.name))
            if value is None or value == "":
                continue
            raw[setting.name] = value
        try:
            data["strategy_settings"] = strategy_settings.clean_settings(strategy, raw)
        except SettingsError as error:
            self.add_error(_error_field(strategy, error.field), error.message)
        return data

    def clean_excluded_domains(self):
        domains = self.cleaned_data.get("excluded_domains") or []
        for domain in domains:
            if "/" in domain or " " in domain or len(domain) > 253:
                raise forms.ValidationError(f"{domain!r} is not a domain name (e.g. example.org).")
        return [d.strip(".") for d in domains]

    def save(self, commit=True):
        panel = super().save(commit=False)
        panel.tools = [name for name, _ in TOOL_CHOICES if name in self.cleaned_data["tools"]]
        panel.excluded_domains = self.cleaned_data.get("excluded_domains") or []
        panel.strategy_settings = self.cleaned_data.get("strategy_settings", {})
        if commit:
            panel.save()
        return panel


def _bounded(field: forms.Field, bound: bounds.Bound) -> None:
    """The field refuses a value outside `bound`, in words that state the range, and
    its input carries the range for the browser. Django's own min/max validators are
    replaced: their "Ensure this value is greater than or equal to 0" says half of it."""

    def check(value) -> None:
        if not bound.allows(value):
            raise forms.ValidationError(bound.refusal(), code="out_of_bounds")

    field.validators = [check]
    if isinstance(field.widget, forms.NumberInput):
        field.widget.attrs.update(min=bound.low, max=bound.high)


def setting_field(strategy: str, name: str) -> str:
    return f"{strategy}__{name}"


def _error_field(strategy: str, name: str) -> str | None:
    known = {s.name for s in strategy_settings.SETTINGS.get(strategy, ())}
    return setting_field(strategy, name) if name in known else None


class _Common(TypedDict):
    label: str
    help_text: str
    required: bool


def _setting_field(setting: strategy_settings.Setting) -> forms.Field:
    common: _Common = {"label": setting.label, "help_text": setting.help, "required": False}
    if setting.kind == "bool":
        return forms.BooleanField(initial=setting.default, **common)
    if setting.kind == "fraction":
        return forms.FloatField(
            min_value=setting.low,
            max_value=setting.high,
            initial=setting.default,
            widget=_step(0.05),
            **common,
        )
    if setting.kind == "count":
        return forms.IntegerField(
            min_value=int(setting.low),
            max_value=int(setting.high),
            initial=setting.default,
            **common,
        )
    if setting.kind == "choice":
        return forms.ChoiceField(
            choices=[(c, c) for c in setting.choices], initial=setting.default, **common
        )
    return _CategoriesField(initial=_shown(setting, setting.default), **common)


def _step(step: float) -> forms.NumberInput:
    return forms.NumberInput(attrs={"step": step})


def _shown(setting: strategy_settings.Setting, value):
    return ", ".join(value) if setting.kind == "categories" else value


class SeatForm(forms.ModelForm):
    tags = _CategoriesField(
        required=False,
        label="Expert at",
        help_text="Route: the categories this seat answers, comma-separated (e.g. code, "
        "reasoning).",
    )
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
            "weight",
            "tier",
            "use_tools",
            "max_tool_calls",
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
            "weight": "Vote weight",
            "tier": "Tier",
            "use_tools": "Uses the panel's tools",
            "max_tool_calls": "Tool calls at most",
        }
        help_texts = {
            "weight": "Vote: how much this seat's vote counts (default 1).",
            "tier": "Escalate: 1 answers first; 2 only when tier 1 disagrees.",
            "max_tool_calls": "Per answer (default 8).",
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        usable = CatalogModel.objects.usable_by(user).select_related("provider")
        _offer(self.fields["model"], usable)
        self.fields["model"].required = True
        _offer(self.fields["fallbacks"], usable)
        self.fields["position"].required = False
        self.fields["weight"].required = False
        self.fields["max_tool_calls"].required = False
        self.fields["tier"].required = False
        self.fields["tier"].widget = forms.Select(choices=[(1, "1"), (2, "2")])
        for name, bound in bounds.SEAT.items():
            _bounded(self.fields[name], bound())
        if self.instance.pk:
            self.initial["fallbacks"] = self.instance.fallback_ids
            self.initial["position"] = self.instance.position + 1
            self.initial["tags"] = ", ".join(self.instance.tags)
        else:
            self.initial["position"] = None  # new seats go last unless numbered

    # Empty means the default; the bounds were checked by the fields' validators.
    def clean_weight(self):
        value = self.cleaned_data["weight"]
        return 1.0 if value is None else value

    def clean_max_tool_calls(self):
        value = self.cleaned_data["max_tool_calls"]
        return 8 if value is None else value

    def clean_tier(self):
        value = self.cleaned_data["tier"]
        return 1 if value in (None, "") else value

    def save(self, commit=True):
        seat = super().save(commit=False)
        seat.tags = self.cleaned_data.get("tags") or []
        seat.fallback_ids = [m.pk for m in self.cleaned_data["fallbacks"]]
        if commit:
            seat.save()
        return seat


class BaseSeatFormSet(BaseInlineFormSet):
    def kept(self) -> list[SeatForm]:
        """The seat forms filled in and not marked for removal."""
        return [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]

    def clean(self):
        super().clean()
        kept = self.kept()
        if not kept:
            raise forms.ValidationError("A panel needs at least one seat.")
        if len(kept) > MAX_SEATS:
            raise forms.ValidationError(f"A panel has at most {MAX_SEATS} seats.")

    def strategy_view(self) -> list[dict]:
        """What the strategy rules need of the kept seats: tags and tiers."""
        return [
            {"tags": f.cleaned_data.get("tags") or [], "tier": f.cleaned_data.get("tier") or 1}
            for f in self.kept()
        ]


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
        super().clean()
        data = self.cleaned_data  # what Form.clean returns
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

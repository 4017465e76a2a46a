from django import forms

from .models import Provider


class ProviderForm(forms.ModelForm):
    """The API key is write-only: never rendered back, left unchanged when blank."""

    base_url = forms.URLField(
        assume_scheme="https",
        max_length=300,
        help_text="The API root, e.g. https://openrouter.ai/api/v1",
    )
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: the stored key is never shown. Leave blank to keep it.",
    )

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "is_active"]

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        if self.instance.key_hint:
            self.fields[
                "api_key"
            ].help_text = (
                f"Stored key: {self.instance.key_hint}. Write-only; leave blank to keep it."
            )

    def clean_api_key(self):
        key = self.cleaned_data["api_key"]
        if key and (not (key.isascii() and key.isprintable()) or " " in key):
            raise forms.ValidationError(
                "An API key is one word of printable characters: check what was pasted."
            )
        return key

    def clean_name(self):
        name = self.cleaned_data["name"]
        owner = self.owner if self.owner is not None else self.instance.owner
        clash = Provider.objects.filter(owner=owner, name=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("You already have a provider with this name.")
        return name

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.owner is not None:
            provider.owner = self.owner
            provider.source = Provider.Source.USER
        if self.cleaned_data.get("api_key"):
            provider.set_api_key(self.cleaned_data["api_key"])
        if commit:
            provider.save()
        return provider

    models = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "openai/gpt-4o-mini"}),
        help_text="Model ids this provider serves, one per line (added to your model list).",
    )

    def clean_models(self) -> list[str]:
        ids = [line.strip() for line in self.cleaned_data["models"].splitlines() if line.strip()]
        for model_id in ids:
            if len(model_id) > 200 or any(c.isspace() for c in model_id):
                raise forms.ValidationError(f"{model_id[:40]!r} is not a model id.")
        return ids

    def _post_clean(self):
        if self.owner is not None:
            self.instance.owner = self.owner
        super()._post_clean()  # type: ignore[misc]  # django-stubs omit this private hook

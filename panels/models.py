"""Providers (where models are served, with whose key) and the model catalog.

Long on purpose: a provider, its catalog models and their prices are one data model,
migrated together."""

from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q, TextChoices

from . import crypto, local_models
from .providers import Endpoint

# Imported by name: the module shares its name with Panel.strategy_settings, the field.
from .strategy_settings import CHOICES as STRATEGY_CHOICES
from .strategy_settings import FUSION, clean_settings


class Provider(models.Model):
    # Not `models.TextChoices`: inside Provider, `models` is also its catalog's
    # related name, and the type checker reads it so.
    class Kind(TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic (Messages API)"

    class Source(TextChoices):
        ADMIN = "admin", "Added by an administrator"
        ENV = "env", "From an environment variable"
        LOCAL = "local", "Bundled local model"
        USER = "user", "A user's own key"

    # No owner: a site-wide provider every user may call. With an owner: that
    # user's own key (bring your own key), reachable only at public addresses.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="providers",
    )
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(max_length=300)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ADMIN)
    # The key itself is only ever stored encrypted; the hint is what may be shown.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    key_hint = models.CharField(max_length=16, blank=True, editable=False)
    local_model_key = models.CharField(max_length=64, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(owner__isnull=True), name="unique_site_provider_name"
            ),
            models.UniqueConstraint(fields=["owner", "name"], name="unique_user_provider_name"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_site_wide(self) -> bool:
        return self.owner_id is None

    def set_api_key(self, plaintext: str) -> None:
        plaintext = plaintext.strip()
        # A key with spaces or control characters would make HTTP libraries raise
        # errors that quote the header, key included.
        if plaintext and not (plaintext.isascii() and plaintext.isprintable()) or " " in plaintext:
            raise ValueError("An API key is one word of printable ASCII characters.")
        self.api_key_encrypted = crypto.encrypt(plaintext)
        self.key_hint = crypto.hint(plaintext)

    def reveal_api_key(self, *, purpose: str) -> str:
        """The plaintext key, for an outgoing call only. Takes an argument so that a
        template can never call it: `{{ provider.reveal_api_key }}` renders nothing."""
        assert purpose, "say why the key is needed"
        return crypto.decrypt(self.api_key_encrypted)

    def clean(self):
        from .providers import netguard

        try:
            self.base_url = netguard.check_url_shape(self.base_url)
            if not self.is_site_wide:
                self.base_url = netguard.validate_public_base_url(self.base_url)
        except ValueError as exc:
            raise ValidationError({"base_url": str(exc)}) from None

    def endpoint(self) -> Endpoint:  # (never called from templates, see below)
        base_url = self.base_url
        if self.source == self.Source.LOCAL and (model := local_models.get(self.local_model_key)):
            base_url = model.base_url  # follows LOCAL_MODELS_PORT, whatever was stored
        headers: tuple[tuple[str, str], ...] = ()
        host = urlsplit(base_url).hostname or ""
        if host == "openrouter.ai" or host.endswith(".openrouter.ai"):
            headers = (("HTTP-Referer", settings.SITE_URL), ("X-Title", settings.SITE_NAME))
        return Endpoint(
            kind=self.kind,
            base_url=base_url,
            api_key=self.reveal_api_key(purpose="outgoing call"),
            name=self.name,
            public_only=not self.is_site_wide,
            extra_headers=headers,
        )

    # The endpoint carries the plaintext key: `{{ provider.endpoint.api_key }}` must
    # render nothing.
    endpoint.do_not_call_in_templates = True  # type: ignore[attr-defined]  # Django's flag on a method


class CatalogModelQuerySet(models.QuerySet):
    def usable_by(self, user) -> "CatalogModelQuerySet":
        """Models on site-wide providers and on the user's own providers."""
        reachable = Q(provider__owner__isnull=True)
        if user is not None and user.is_authenticated:
            reachable |= Q(provider__owner=user)
        return self.filter(reachable, is_active=True, provider__is_active=True)


class CatalogModel(models.Model):
    class Source(models.TextChoices):
        CURATED = "curated", "Shipped list"
        OPENROUTER = "openrouter", "OpenRouter sync"
        LOCAL = "local", "Bundled local model"
        MANUAL = "manual", "Added by hand"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The id the provider's API expects.")
    display_name = models.CharField(max_length=200)
    context_length = models.PositiveIntegerField(default=8192)
    # USD per million tokens; empty means unknown (never silently zero).
    input_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    supports_tools = models.BooleanField(default=False)
    # It writes tool calls in its text instead of the API's structured `tool_calls`
    # (the bundled Qwen models): they are read from its text (text_tool_calls.py).
    tool_calls_in_text = models.BooleanField(
        default=False,
        help_text="The model writes tool calls as text (<tool_call> or a JSON object); "
        "read them as real tool calls when tools were offered.",
    )
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.MANUAL)
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CatalogModelQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="unique_provider_model")
        ]

    def __str__(self):
        return f"{self.display_name} ({self.provider})"

    @property
    def ref(self) -> str:
        """A stable, readable reference: "<provider id>:<model id>"."""
        return f"{self.provider_id}:{self.model_id}"

    @property
    def price_known(self) -> bool:
        return self.input_price is not None and self.output_price is not None

    def price_per_token(self) -> tuple[Decimal, Decimal] | None:
        if self.input_price is None or self.output_price is None:  # not price_known
            return None
        million = Decimal(1_000_000)
        return self.input_price / million, self.output_price / million


class PanelQuerySet(models.QuerySet):
    def visible_to(self, user) -> "PanelQuerySet":
        """What the user may list and pick: presets, their own panels, public ones.
        (An unlisted panel is reached by its slug only: see `reachable_by`.)"""
        mine = Q(owner__isnull=True) | Q(visibility="public")
        if user is not None and user.is_authenticated:
            mine |= Q(owner=user)
        return self.filter(mine)

    def reachable_by(self, user) -> "PanelQuerySet":
        """What the user may open by slug: the visible ones and unlisted ones."""
        return self.filter(Q(pk__in=self.visible_to(user).values("pk")) | Q(visibility="unlisted"))


class Panel(models.Model):
    """A recipe: seats that answer in parallel, a judge, a synthesizer."""

    class Visibility(models.TextChoices):
        PRIVATE = "private"
        UNLISTED = "unlisted"
        PUBLIC = "public"

    # No owner: a preset every user sees and nobody edits.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="panels",
    )
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    judge = models.ForeignKey(
        CatalogModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Empty: the judge model also writes the synthesis.
    synthesizer = models.ForeignKey(
        CatalogModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    synthesizer_fallback = models.ForeignKey(
        CatalogModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    judge_drafts = models.BooleanField(
        default=False, help_text="The judge writes the final answer too: one call instead of two."
    )
    # Empty: wait for every seat.
    min_answers = models.PositiveSmallIntegerField(null=True, blank=True)
    deadline_s = models.FloatField(default=120.0)
    # How the panel answers (panels/strategy_settings.py); settings checked there.
    strategy = models.CharField(max_length=16, choices=STRATEGY_CHOICES, default=FUSION)
    strategy_settings = models.JSONField(default=dict, blank=True)
    # Tools the seats may call (web_search, web_fetch, run_python); none by default.
    tools = models.JSONField(default=list, blank=True)
    # The judge may run code (in the sandbox) to settle a contradiction.
    judge_tools = models.BooleanField(
        default=False,
        help_text="When answers disagree about a computation or a program's output, the judge "
        "runs it in the sandbox before judging.",
    )
    # Never searched nor fetched by this panel's seats (on top of the site's list).
    excluded_domains = models.JSONField(default=list, blank=True)
    # The route strategy's router; empty: the judge's model routes.
    router = models.ForeignKey(
        CatalogModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    use_count = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PanelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_preset(self) -> bool:
        return self.owner_id is None

    def snapshot(self, seats: "list[Seat] | None" = None) -> dict:
        """The frozen configuration a run keeps: later edits never change history.
        An unsaved panel given its unsaved `seats` (an ad-hoc panel, built for one
        request from a recipe or the API's fusion plugin) snapshots the same way,
        with no panel row to name."""
        if seats is None:
            seats = list(self.seats.select_related("model__provider"))
        named = {"id": self.pk, "slug": self.slug, "name": self.name, "version": self.version}
        return {
            "panel": named if self.pk is not None else None,
            "seats": [seat.snapshot() for seat in seats],
            "judge": _model_ref(self.judge),
            "synthesizer": _model_ref(self.synthesizer or self.judge),
            "synthesizer_fallback": _model_ref(self.synthesizer_fallback),
            "judge_drafts": self.judge_drafts,
            "min_answers": self.min_answers,
            "deadline_s": self.deadline_s,
            "strategy": {
                "name": self.strategy,
                **clean_settings(self.strategy, self.strategy_settings),
            },
            "router": _model_ref(self.router or self.judge),
            "tools": list(self.tools),
            "judge_tools": self.judge_tools,
            "excluded_domains": list(self.excluded_domains),
        }


def _model_ref(model: "CatalogModel | None") -> dict | None:
    if model is None:
        return None
    return {
        "catalog_id": model.pk,
        "provider_id": model.provider_id,
        "provider": model.provider.name,
        "model_id": model.model_id,
        "name": model.display_name,
        "context_length": model.context_length,
        "local": model.provider.source == Provider.Source.LOCAL,
        "supports_tools": model.supports_tools,
    }


def solo_snapshot(model: CatalogModel) -> dict:
    """One model answering alone: a panel of one seat, no judge, no synthesis."""
    return {
        "panel": None,
        "seats": [
            {
                "model": _model_ref(model),
                "fallbacks": [],
                "system_prompt": "",
                "temperature": None,
                "max_tokens": None,
                "limits": {},
            }
        ],
        "judge": None,
        "synthesizer": None,
        "synthesizer_fallback": None,
        "judge_drafts": False,
        "min_answers": None,
        "deadline_s": None,
        "strategy": {"name": FUSION},
        "router": None,
        "tools": [],
        "excluded_domains": [],
    }


class Seat(models.Model):
    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="seats")
    position = models.PositiveSmallIntegerField(default=0)
    # Empty when its catalog entry was deleted: the seat then fails in words.
    model = models.ForeignKey(CatalogModel, null=True, on_delete=models.SET_NULL, related_name="+")
    # Catalog ids tried in order when the seat's model fails before answering.
    fallback_ids = models.JSONField(default=list, blank=True)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    first_token_timeout_s = models.FloatField(null=True, blank=True)
    idle_timeout_s = models.FloatField(null=True, blank=True)
    total_timeout_s = models.FloatField(null=True, blank=True)
    # Used by strategies: a vote's weight, the categories a router sends here, the tier.
    weight = models.FloatField(default=1.0)
    tags = models.JSONField(default=list, blank=True)
    tier = models.PositiveSmallIntegerField(default=1)
    # Whether this seat may call the panel's tools, and how many times per answer.
    use_tools = models.BooleanField(default=True)
    max_tool_calls = models.PositiveSmallIntegerField(default=8)

    class Meta:
        ordering = ["panel", "position", "pk"]

    def __str__(self):
        model = self.model.display_name if self.model is not None else "(removed model)"
        return f"{self.panel} seat {self.position + 1}: {model}"

    def snapshot(self) -> dict:
        fallbacks = CatalogModel.objects.filter(pk__in=self.fallback_ids).select_related("provider")
        by_id = {m.pk: m for m in fallbacks}
        return {
            "model": _model_ref(self.model),
            "fallbacks": [_model_ref(by_id[i]) for i in self.fallback_ids if i in by_id],
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "limits": {
                "first_token_s": self.first_token_timeout_s,
                "idle_s": self.idle_timeout_s,
                "total_s": self.total_timeout_s,
            },
            "weight": self.weight,
            "tags": list(self.tags),
            "tier": self.tier,
            "use_tools": self.use_tools,
            "max_tool_calls": self.max_tool_calls,
        }


class PanelVersion(models.Model):
    """Each save of a panel keeps its recipe: runs name the version they used."""

    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    recipe = models.JSONField()
    changes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["panel", "number"], name="unique_panel_version")
        ]

    def __str__(self):
        return f"{self.panel} v{self.number}"

"""How many panels, providers and datasets one user may keep.

Each is a row that costs storage and, for a provider, a stored key: with no count a
script could fill the database one form post at a time. The caps are settings only
(MAX_PANELS_PER_USER, MAX_PROVIDERS_PER_USER, MAX_DATASETS_PER_USER), not fields of
`limits.Limits`: panels lies below limits in the layers, and nobody has needed to
raise them for one user (docs/LIMITS.md). Every door that makes one meets the check:
the pages, a recipe import, a fork, a dataset upload and the eval command.
"""

from django.conf import settings

from .models import Panel, Provider


class OverQuota(Exception):
    """A user already keeps as many of a kind as they may; the message says what to do."""


def refuse_when_full(kind: str, held: int, allowed: int, way_out: str) -> None:
    if held >= allowed:
        raise OverQuota(f"You have {held} {kind}, the most allowed ({allowed}). {way_out}")


def check_panels(user) -> None:
    refuse_when_full(
        "panels",
        Panel.objects.filter(owner=user).count(),
        settings.MAX_PANELS_PER_USER,
        "Delete a panel you no longer use, then make the new one.",
    )


def check_providers(user) -> None:
    refuse_when_full(
        "providers",
        Provider.objects.filter(owner=user).count(),
        settings.MAX_PROVIDERS_PER_USER,
        "Delete a provider you no longer use, then add the new one.",
    )

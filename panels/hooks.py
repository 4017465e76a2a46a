"""What the panels' pages show from the apps above panels, without importing them.

panels sits low in the layers (pyproject.toml's import-linter contracts): evals and
limits import panels, never the reverse. Yet a panel's page shows its measured
quality, which evals measures, and the providers page each API key's spend this
month, which limits counts. Each of those apps fills its hook here in its
AppConfig.ready; the pages call the hook.
"""

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet

from .models import Panel

# A saved panel's latest finished measurement per dataset that `viewer` may see, as
# rows for the panel's page (evals.report.panel_evidence).
Evidence = Callable[[Panel, Any], list[dict]]
# The user's API keys, each with `month_usd`: its spend this calendar month
# (limits.spend.keys_with_spend).
KeySpend = Callable[[Any], QuerySet]


class HookNotFilled(LookupError):
    """A page asked for something an app above panels should have provided."""

    def __init__(self, name: str, app: str):
        super().__init__(
            f"panels.hooks.{name} was never filled: the {app!r} app fills it in its "
            f"AppConfig.ready. Is {app!r} in INSTALLED_APPS?"
        )


_evidence: Evidence | None = None
_key_spend: KeySpend | None = None


def provide_panel_evidence(source: Evidence) -> None:
    global _evidence
    _evidence = source


def provide_key_spend(source: KeySpend) -> None:
    global _key_spend
    _key_spend = source


def panel_evidence(panel: Panel, viewer: Any) -> list[dict]:
    if _evidence is None:
        raise HookNotFilled("panel_evidence", "evals")
    return _evidence(panel, viewer)


def keys_with_spend(user: Any) -> QuerySet:
    if _key_spend is None:
        raise HookNotFilled("keys_with_spend", "limits")
    return _key_spend(user)

"""A panel's lineage: unguessable slugs, numbered versions that say what changed, forks."""

import secrets

from django.db import transaction
from django.utils.text import slugify

from . import recipes
from .models import Panel, PanelVersion


def new_slug(name: str) -> str:
    """Readable and unguessable: unlisted links must not be found by trying names."""
    return f"{slugify(name)[:40] or 'panel'}-{secrets.token_urlsafe(9).lower().replace('_', 'x')}"


def _changes(before: dict | None, after: dict) -> str:
    if before is None:
        return "Created."
    changed = [key for key in after if key != "seats" and before.get(key) != after.get(key)]
    if before.get("seats") != after.get("seats"):
        old, new = len(before.get("seats") or []), len(after["seats"])
        changed.append(f"seats ({old} → {new})" if old != new else "seats")
    return ("Changed: " + ", ".join(changed) + ".") if changed else "Saved without changes."


def record_version(panel: Panel, note: str = "") -> PanelVersion:
    """Keep this save's recipe as the panel's next version; `note` says why it was made
    (a calibration names its evaluation) before what changed."""
    recipe = recipes.to_recipe(panel)
    last = panel.versions.first()
    number = (last.number + 1) if last else 1
    if panel.version != number:
        Panel.objects.filter(pk=panel.pk).update(version=number)
        panel.version = number
    return PanelVersion.objects.create(
        panel=panel,
        number=number,
        recipe=recipe,
        changes=" ".join(filter(None, [note, _changes(last.recipe if last else None, recipe)])),
    )


@transaction.atomic
def fork(panel: Panel, user) -> recipes.Imported | Panel:
    """Copy a panel into the user's own (a preset's "Customize" too). Models the user
    cannot reach are not carried over silently: the import report says which."""
    data = recipes.validate(recipes.to_recipe(panel))
    data["name"] = panel.name if panel.owner_id == user.pk else f"{panel.name} (fork)"
    imported = recipes.resolve(data, user)
    if imported.missing:
        return imported
    copy = recipes.save_as_panel(imported, user, new_slug(data["name"]))
    copy.forked_from = panel
    copy.save(update_fields=["forked_from"])
    record_version(copy)
    return copy

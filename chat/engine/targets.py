"""Which models a call may use: the references of a run's frozen configuration
turned into callable targets, among the models the run's owner may use."""

from panels.calls import Target
from panels.crypto import UnreadableSecret
from panels.models import CatalogModel, Provider
from panels.providers import ErrorKind, ProviderError


def target_for(model: CatalogModel) -> Target:
    return Target(
        provider_id=model.provider_id,
        model_id=model.model_id,
        display_name=model.display_name,
        endpoint=model.provider.endpoint(),
        prices=model.price_per_token(),
        context_length=model.context_length,
        site_wide=model.provider.is_site_wide,
        tool_calls_in_text=model.tool_calls_in_text,
        queues=model.provider.source == Provider.Source.LOCAL,
    )


def usable_models(refs: list[dict | None], owner) -> dict[int, CatalogModel]:
    """The models of these references that the run's owner may use, in one query."""
    ids = [ref["catalog_id"] for ref in refs if ref]
    return CatalogModel.objects.usable_by(owner).select_related("provider").in_bulk(ids)


def targets_for(
    refs: list[dict | None], owner, usable: dict[int, CatalogModel] | None = None
) -> list[Target]:
    """Callable targets for model references of a run's frozen configuration, among
    the models the run's owner may use: a shared panel never spends its author's
    own keys. `usable` is what usable_models read already for several calls."""
    ids = [ref["catalog_id"] for ref in refs if ref]
    models = usable_models(refs, owner) if usable is None else usable
    targets = []
    for catalog_id in ids:
        model = models.get(catalog_id)
        if model is None or not model.is_active or not model.provider.is_active:
            continue
        try:
            targets.append(target_for(model))
        except UnreadableSecret as exc:
            raise ProviderError(str(exc), retryable=False, kind=ErrorKind.AUTH) from None
    if not targets:
        raise ProviderError(
            "This model is not available to you: removed, switched off, or behind someone "
            "else's own provider key.",
            retryable=False,
            kind=ErrorKind.UNAVAILABLE,
        )
    return targets

"""Providers and keys: the API keys page, a provider's edit page, its connection check."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import quotas
from .hooks import keys_with_spend
from .models import CatalogModel, Provider
from .provider_check import check_connection
from .provider_forms import ProviderForm


def _own_provider(request, pk: int) -> Provider:
    """Someone else's provider is a 404, like a missing one."""
    return get_object_or_404(Provider, pk=pk, owner=request.user)


def _save_models(provider: Provider, model_ids: list[str]) -> None:
    for model_id in model_ids:
        CatalogModel.objects.get_or_create(
            provider=provider,
            model_id=model_id,
            defaults={"display_name": model_id, "source": CatalogModel.Source.MANUAL},
        )


def _room_for_a_provider(form: ProviderForm, user) -> bool:
    try:
        quotas.check_providers(user)
    except quotas.OverQuota as exc:
        form.is_valid()  # errors can only be added to a bound, cleaned form
        form.add_error(None, str(exc))
        return False
    return True


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request):
    form = ProviderForm(request.POST or None, owner=request.user)
    if request.method == "POST" and _room_for_a_provider(form, request.user) and form.is_valid():
        provider = form.save()
        _save_models(provider, form.cleaned_data["models"])
        messages.success(request, f"Provider {provider} saved. Its key is stored encrypted.")
        return redirect("panels:api_keys")
    return render(
        request,
        "panels/api_keys.html",
        {
            "form": form,
            "providers": request.user.providers.prefetch_related("models"),
            "site_providers": Provider.objects.filter(owner=None, is_active=True),
            "api_keys": keys_with_spend(request.user),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def provider_edit(request, pk: int):
    provider = _own_provider(request, pk)
    form = ProviderForm(request.POST or None, instance=provider, owner=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        _save_models(provider, form.cleaned_data["models"])
        messages.success(request, f"Provider {provider} updated.")
        return redirect("panels:api_keys")
    return render(
        request,
        "panels/provider_edit.html",
        {"form": form, "provider": provider},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def provider_delete(request, pk: int):
    provider = _own_provider(request, pk)
    provider.delete()
    messages.success(request, f"Provider {provider} and its key were deleted.")
    return redirect("panels:api_keys")


@login_required
@require_POST
def provider_test(request, pk: int):
    provider = _own_provider(request, pk)
    ok, message = check_connection(provider, request.POST.get("model_id", "").strip())
    (messages.success if ok else messages.error)(request, f"{provider}: {message}")
    return redirect("panels:api_keys")

"""The "check connection" button on a provider: one tiny real call, reported in words."""

import asyncio

import httpx

from . import calls
from .cooldown import Cooldowns
from .models import Provider
from .providers import ChatMessage, ChatRequest


class _NoCooldowns(Cooldowns):
    """A connection test should always really call, and never cool a model down."""

    def __init__(self):
        pass

    async def remaining(self, provider_id, model_id):
        return 0

    async def failed(self, provider_id, model_id):
        return 0

    async def succeeded(self, provider_id, model_id):
        return None


def check_connection(provider: Provider, model_id: str = "") -> tuple[bool, str]:
    model = provider.models.filter(model_id=model_id).first() if model_id else None
    model = model or provider.models.filter(is_active=True).first()
    if model is None and not model_id:
        return False, "Add a model id to test with: this provider has no models in the catalog."
    target = calls.Target(
        provider_id=provider.pk,
        model_id=model.model_id if model else model_id,
        display_name=model.display_name if model else model_id,
        endpoint=provider.endpoint(),
        prices=model.price_per_token() if model else None,
    )
    request = ChatRequest(
        model=target.model_id, messages=(ChatMessage("user", "Say OK."),), max_tokens=5
    )
    limits = calls.CallLimits(connect_s=5, first_token_s=20, idle_s=20, total_s=30)

    async def run() -> calls.CallResult:
        result = calls.CallResult()

        async def ignore(_text):
            pass

        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            await calls.call(
                [target],
                request,
                result,
                client=client,
                cooldowns=_NoCooldowns(),
                on_text=ignore,
                limits=limits,
                retry=calls.RetryPolicy(0),
            )
        return result

    result = asyncio.run(run())
    if result.ok:
        # An answered call has its latency: `call` sets it whenever it ends.
        seconds = (result.latency_ms or 0) / 1000
        return True, (
            f"Connected: {target.display_name} answered in {seconds:.1f} s "
            f"({result.text.strip()[:40]!r})."
        )
    return False, f"Failed: {result.error.message if result.error else 'no model answered'}"

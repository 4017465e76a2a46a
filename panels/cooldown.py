"""Cooldown per (provider, model), shared by every worker through Redis.

After COOLDOWN_AFTER failures in a row a model is skipped for a while, longer each
time it happens again (30 s → 1 min → 5 min); one success clears its record.

A site-wide provider's cooldown is every user's, so only failures that are the
upstream's fault whoever called may count toward it (`counts_toward_cooldown`):
otherwise one user could switch a model off for everybody with a seat whose time
limits nothing can meet. A user's own provider serves that user alone; there a
timeout under the user's own limits counts too.
"""

from django.conf import settings

from .call_limits import CallLimits
from .providers import ErrorKind, ProviderError

STEPS_S = (30, 60, 300)
FAILURE_WINDOW_S = 600  # failures further apart than this do not add up
LEVEL_MEMORY_S = 3600  # how long a model remembers having been cooled down


# What an unwell upstream looks like, whoever called it. Not here: what the caller
# caused (a bad request, a context too long, a refused URL, a loop cut off, a size
# cap, a cancel) and what a retry cannot change (a refused key, an unknown model).
UPSTREAM_FAULTS = frozenset(
    {
        ErrorKind.SERVER,  # 5xx (and 408, 409)
        ErrorKind.RATE_LIMITED,  # 429
        ErrorKind.CONNECTION,  # refused, reset, unreachable
        ErrorKind.STREAM,  # cut off or broken mid-answer
        ErrorKind.TIMEOUT,  # weighed below
    }
)


def counts_toward_cooldown(
    error: ProviderError,
    limits: CallLimits,
    *,
    site_wide: bool,
    answering: bool,
    queues: bool = False,
) -> bool:
    """Whether one failed attempt counts toward its (provider, model) cooldown.

    `limits` are the call's time limits; `answering` says text had arrived. On a
    site-wide provider a timeout counts only when the limit that ran out (the
    error's code names it; a connect timeout names none) was the site's default
    or looser, and a total limit only when nothing had arrived: a long answer
    still streaming at its end says the caller asked for much, not that the
    upstream is down.

    A server that `queues` calls beyond its slots (a bundled local model) counts only
    a connect timeout: its first token waits for the calls ahead of it, and three
    queued calls timing out would otherwise switch the keyless default off for every
    user exactly when it is busiest.
    """
    if not error.retryable or error.kind not in UPSTREAM_FAULTS:
        return False
    if queues and error.kind == ErrorKind.TIMEOUT and error.code in ("first_token_s", "total_s"):
        return False
    if not site_wide or error.kind != ErrorKind.TIMEOUT or not error.code:
        return True
    if getattr(limits, error.code) < getattr(CallLimits.from_settings(), error.code):
        return False  # the caller's own tighter limit
    return not (error.code == "total_s" and answering)


def _key(provider_id: int, model_id: str, part: str) -> str:
    return f"fr:cooldown:{provider_id}:{model_id}:{part}"


class Cooldowns:
    def __init__(self, redis, threshold: int | None = None, steps: tuple[int, ...] = STEPS_S):
        self.redis = redis
        self.threshold = threshold or settings.COOLDOWN_AFTER
        self.steps = steps

    async def remaining(self, provider_id: int, model_id: str) -> float:
        """Seconds left of a cooldown; 0 when the model may be called."""
        ttl_ms = await self.redis.pttl(_key(provider_id, model_id, "until"))
        return max(0, ttl_ms) / 1000

    async def failed(self, provider_id: int, model_id: str) -> float:
        """Record a failure; returns the cooldown it started (0 if none)."""
        failures_key = _key(provider_id, model_id, "failures")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, FAILURE_WINDOW_S)
            failures, _ = await pipe.execute()
        if int(failures) < self.threshold:
            return 0
        level_key = _key(provider_id, model_id, "level")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(level_key)
            pipe.expire(level_key, LEVEL_MEMORY_S)
            pipe.delete(failures_key)
            level, _, _ = await pipe.execute()
        seconds = self.steps[min(int(level), len(self.steps)) - 1]
        await self.redis.set(_key(provider_id, model_id, "until"), "1", ex=seconds)
        return seconds

    async def succeeded(self, provider_id: int, model_id: str) -> None:
        await self.redis.delete(
            _key(provider_id, model_id, "failures"), _key(provider_id, model_id, "level")
        )

"""Cooldown per (provider, model), shared by every worker through Redis.

After COOLDOWN_AFTER failures in a row a model is skipped for a while, longer each
time it happens again (30 s → 1 min → 5 min); one success clears its record.
Only failures that say something about the upstream (timeouts, 5xx, 429, cut
streams) count; a bad key or a bad request would fail the same way every time.
"""

from django.conf import settings

STEPS_S = (30, 60, 300)
FAILURE_WINDOW_S = 600  # failures further apart than this do not add up
LEVEL_MEMORY_S = 3600  # how long a model remembers having been cooled down


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

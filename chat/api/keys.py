"""API keys: made, shown once, stored as a hash, found by prefix, rate limited."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from chat.models import ApiKey
from core import windows
from limits.effective import limits_for

KEY_START = "fr-"


class TooManyKeys(Exception):
    pass


def create_key(user, name: str, spend_limit_usd: Decimal | None = None) -> tuple[ApiKey, str]:
    """Returns the record and the key itself, which is never stored nor shown again.
    TooManyKeys when the user has as many active keys as they may."""
    allowed = limits_for(user).api_keys
    active = ApiKey.objects.filter(user=user, revoked_at__isnull=True).count()
    if active >= allowed:
        raise TooManyKeys(
            f"You have {active} active API keys, the most allowed ({allowed}). "
            "Revoke one you no longer use, then make a new one."
        )
    prefix = secrets.token_hex(4)
    key = f"{KEY_START}{prefix}-{secrets.token_urlsafe(32)}"
    record = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        spend_limit_usd=spend_limit_usd,
    )
    return record, key


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def find(key: str) -> ApiKey | None:
    """The active key matching `key`, or None (unknown, malformed or revoked)."""
    if not key.startswith(KEY_START) or key.count("-") < 2:
        return None
    prefix = key[len(KEY_START) :].split("-", 1)[0]
    record = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if record is None or not hmac.compare_digest(record.key_hash, _hash(key)):
        return None
    if not record.is_active or not record.user.is_active:
        return None
    ApiKey.objects.filter(pk=record.pk).update(last_used_at=timezone.now())
    return record


@dataclass(frozen=True)
class RateWindow:
    """A user's API requests in their current minute, as the x-ratelimit-* headers
    tell a caller (OpenAI's names; the reset is a duration, as OpenAI writes it)."""

    limit: int
    used: int  # this request included
    reset_s: int  # until the window closes

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.limit - self.used)),
            "x-ratelimit-reset-requests": f"{self.reset_s}s",
        }


def count_request(redis_client, record: ApiKey) -> RateWindow:
    """Count one request of this key's owner in their current window. The limit is
    the user's, shared by all their keys (a second key is no way around it). A
    window opens with the first request and lasts a minute (not a wall-clock
    minute, whose boundary would let a burst through twice)."""
    ((count, ttl),) = windows.count(redis_client, [f"fr:ratelimit:user:{record.user_id}"], 60)
    return RateWindow(settings.API_RATE_LIMIT_PER_MINUTE, count, ttl)

"""Throttles on logging in and signing up, counted in Redis so that every web process
(several Daphnes behind a load balancer) shares one count.

Log in: failures are counted per username (a guesser moving between addresses) and per
client address (a guesser moving between usernames). The count is taken *before* the
password is checked and given back when it was right, so a burst of parallel guesses
cannot all slip in before the first failure is counted. A window opens with the first
attempt and lasts AUTH_THROTTLE_WINDOW_S; further attempts do not extend it.

Sign up: every attempt from one address counts.

When Redis does not answer, logging in and signing up are refused (503): a throttle
that vanishes with its store would let guessing run unlimited exactly then.
"""

import hashlib
import logging
import math
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv6Network, ip_address

import redis
from django.conf import settings

from core import windows

log = logging.getLogger(__name__)

PREFIX = "fr:throttle:"

# The username's count is forgotten after a right password; the address's count gives
# back this one attempt (only while its window lasts: a DECR on an expired key would
# leave a key without expiry behind).
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECR', KEYS[2]) end
return 1
"""


@dataclass
class Refusal:
    """A request turned away: its HTTP status, the words for the person, and how many
    seconds to wait (for Retry-After), if waiting helps."""

    status: int
    message: str
    retry_after: int | None = None


@cache
def _client(url: str) -> redis.Redis:
    # One pool per process (per URL); short timeouts: a login never hangs on Redis.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _address_key(kind: str, address: str) -> str:
    # IPv6 is throttled per /64: one subscriber usually holds a whole /64.
    try:
        parsed = ip_address(address)
    except ValueError:
        return f"{PREFIX}{kind}:addr:{address[:64]}"
    if parsed.version == 6:
        return f"{PREFIX}{kind}:addr:{IPv6Network(f'{parsed}/64', strict=False)}"
    return f"{PREFIX}{kind}:addr:{parsed}"


def _username_key(username: str) -> str:
    # Hashed: the key holds no personal data and has a fixed length whatever was typed.
    digest = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return f"{PREFIX}login:user:{digest}"


def _count(keys: list[str]) -> list[tuple[int, int]]:
    """Adds one attempt to each key; returns (count, seconds left in its window) each."""
    return windows.count(_redis(), keys, settings.AUTH_THROTTLE_WINDOW_S)


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _unavailable(doing: str, exc: redis.RedisError) -> Refusal:
    # Not the URL: it may hold Redis's password.
    log.error("auth throttle: Redis is not answering: %s", exc)
    return Refusal(
        503,
        f"{doing} is paused: the server cannot reach Redis, where failed attempts are "
        "counted. Try again in a minute; if it lasts, an administrator should check /healthz.",
    )


@dataclass
class LoginAttempt:
    """One counted attempt to log in. refusal is set when it must not go on."""

    username_key: str
    address_key: str
    refusal: Refusal | None = None

    def succeeded(self) -> None:
        """The password was right: the username's count is forgotten, and the
        address gets this attempt back."""
        try:
            _redis().eval(_SUCCEEDED, 2, self.username_key, self.address_key)
        except redis.RedisError as exc:
            # The person is logged in; the worst outcome is an attempt left counted.
            log.error("auth throttle: could not give back a successful attempt: %s", exc)


def login_attempt(username: str, address: str) -> LoginAttempt:
    attempt = LoginAttempt(_username_key(username), _address_key("login", address))
    try:
        (by_name, name_ttl), (by_address, address_ttl) = _count(
            [attempt.username_key, attempt.address_key]
        )
    except redis.RedisError as exc:
        attempt.refusal = _unavailable("Logging in", exc)
        return attempt
    waits = []
    if by_name > settings.LOGIN_FAILURES_PER_USERNAME:
        waits.append(name_ttl)
    if by_address > settings.LOGIN_FAILURES_PER_ADDRESS:
        waits.append(address_ttl)
    if waits:
        wait = max(waits)
        attempt.refusal = Refusal(
            429, f"Too many failed attempts; try again in {_minutes(wait)}.", wait
        )
    return attempt


def signup_refusal(address: str) -> Refusal | None:
    """Counts one sign-up attempt from this address; a Refusal when there were too many."""
    try:
        [(count, ttl)] = _count([_address_key("signup", address)])
    except redis.RedisError as exc:
        return _unavailable("Signing up", exc)
    if count > settings.SIGNUP_ATTEMPTS_PER_ADDRESS:
        return Refusal(
            429,
            f"Too many sign-up attempts from your address; try again in {_minutes(ttl)}.",
            ttl,
        )
    return None

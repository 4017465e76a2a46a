"""Typed readers for settings that come from the environment.

Every reader fails with ImproperlyConfigured naming the variable and what it
accepts, so a typo stops start-up with a message instead of a strange default.
"""

import os
from decimal import Decimal, InvalidOperation
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean; use one of: true, false, 1, 0, yes, no, on, off."
    )


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ImproperlyConfigured(f"{name}={value} is out of range; use a number {bounds}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; empty items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env_str(name, default)
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a valid URL; it must start with one of: "
            + ", ".join(f"{s}://" for s in schemes)
        )
    return raw


def env_origins(name: str) -> list[str]:
    """CSRF_TRUSTED_ORIGINS entries must carry a scheme, or Django rejects them later."""
    origins = env_list(name, [])
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ImproperlyConfigured(
                f"{name} entry {origin!r} needs a scheme, e.g. https://{origin}"
            )
    return origins


def env_usd(name: str, default: str) -> Decimal | None:
    """An amount in US dollars ("5", "0.25"), or None for "no limit" ("" or "none")."""
    raw = os.environ.get(name, default).strip()
    if raw.lower() in {"", "none"}:
        return None
    try:
        value = Decimal(raw.removeprefix("$"))
    except InvalidOperation:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not an amount in dollars; write e.g. 5 or 0.25, "
            "or none for no limit."
        ) from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must be zero or more dollars.")
    return value


def env_networks(name: str) -> list[IPv4Network | IPv6Network]:
    """A comma-separated list of IP addresses or networks (10.0.0.0/8, ::1)."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} entry {item!r} is not an IP address or network; "
                "use e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8"
            ) from None
    return networks

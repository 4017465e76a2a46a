"""Keeping user-supplied provider URLs off the server's own networks.

A user's base URL could aim our requests at 127.0.0.1, Redis, the LAN or cloud
metadata at 169.254.169.254 (SSRF). Every address a name resolves to must be public,
and the call is then pinned to the checked address, so a DNS answer that changes
between check and connect (DNS rebinding) cannot slip a private address through.
"""

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .base import ErrorKind, ProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?")

# Ranges refused on top of `is_global`: older Pythons (before 3.11.10/3.12.4) count
# several of them as global, and naming them keeps the rule the same everywhere.
_NOT_PUBLIC = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network": Linux connects 0.0.0.0 to the local host
        "100.64.0.0/10",  # shared address space (carrier-grade NAT): a provider's insides
        "192.0.0.0/24",  # IETF protocol assignments; old Pythons refuse only part of it
        "198.18.0.0/15",  # benchmarking: lab networks
        "192.0.2.0/24",  # documentation (TEST-NET-1, -2, -3): never a real service
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",  # IPv6 documentation
        "3fff::/20",  # IPv6 documentation since 2024 (RFC 9637); unknown to old Pythons
    )
]
# IPv6 addresses that only spell an IPv4 one in their last 32 bits, and reach it.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, via a NAT64 gateway
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def check_url_shape(url: str) -> str:
    """The URL, normalised, or a ValueError saying what to fix. Resolves nothing."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        if "port" in str(exc).lower():
            raise ValueError("the port must be a number from 1 to 65535") from None
        raise ValueError(f"this is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        given = f" (not {scheme}://)" if scheme and "//" in url else ""
        raise ValueError(f"the URL must start with http:// or https://{given}")
    if "@" in parts.netloc:
        raise ValueError(
            "remove the user name and password (user:password@) from the URL; "
            "put the key in the API key field"
        )
    if "#" in url:
        raise ValueError("remove the fragment (the '#' and what follows it) from the URL")
    if not parts.hostname:
        raise ValueError("the URL needs a host, as in https://api.example.com/v1")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    netloc = _netloc(_normal_host(parts.hostname), port)
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


def _normal_host(host: str) -> str:
    """An IP literal in its standard spelling, or a lower-case ASCII (IDNA) name."""
    if (literal := _literal(host)) is not None:
        return _spell(literal)
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(f"{host!r} is not a valid host name")
    return name


def _netloc(host: str, port: int | None) -> str:
    bracketed = f"[{host}]" if ":" in host else host  # IPv6 literals go in brackets
    return bracketed if port is None else f"{bracketed}:{port}"


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address."""
    if ip.is_loopback or ip.is_unspecified:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:a.b.c.d, ::a.b.c.d and 64:ff9b::a.b.c.d connect to a.b.c.d, so that
        # address decides (old Pythons call ::ffff:10.0.0.1 private but ::10.0.0.1 and
        # 64:ff9b::a00:1 global).
        embedded = ip.ipv4_mapped
        if embedded is None and (ip in _NAT64 or ip in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        # Tunnels carry traffic to the IPv4 addresses inside: 6to4 (2002::/16) to
        # one, Teredo (2001::/32) to a server and a client.
        tunnelled = [ip.sixtofour] if ip.sixtofour else list(ip.teredo or ())
        if not all(is_public_address(v4) for v4 in tunnelled):
            return False
        # Site-local fec0::/10 is deprecated, but old Pythons call it global.
        if ip.is_site_local:
            return False
    # Multicast is not a server, and old Pythons call most of it global.
    if ip.is_multicast or ip.is_private or ip.is_reserved or ip.is_link_local:
        return False
    if any(ip in network for network in _NOT_PUBLIC):
        return False
    return ip.is_global


def _spell(ip: IPAddress) -> str:
    """Standard spelling, but ::ffff:127.0.0.1 rather than Python 3.11's ::ffff:7f00:1."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return f"::ffff:{mapped}" if mapped else str(ip)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _does_not_resolve(host: str, detail: object) -> str:
    return f"{host} does not resolve ({detail}): check the host name in the base URL"


# --- this site itself ----------------------------------------------------------------
# A user's provider aimed at this site's own /v1 turns one message into nested runs
# (1 + 8 + 64 …), all on the site's keys. The depth header stops the recursion; this
# refuses the loop at its start. "This site" is every name in ALLOWED_HOSTS, every
# host of CSRF_TRUSTED_ORIGINS (the public origin behind a proxy), and every address
# those names resolve to (looked up at most every few minutes). ALLOWED_HOSTS=`*`
# names nothing, so the origins are then the only names: settings.py refuses to start
# with `*` and no other name when DEBUG is off.
_SITE_TTL_S = 300.0
_site_cache: dict[tuple[str, ...], tuple[float, frozenset[str]]] = {}


def _site_names() -> list[str]:
    from django.conf import settings

    hosts = [h for h in settings.ALLOWED_HOSTS if h and h != "*"]
    origins = [urlsplit(origin).hostname or "" for origin in settings.CSRF_TRUSTED_ORIGINS]
    names = [h.lower().rstrip(".") for h in hosts + [o for o in origins if o]]
    return list(dict.fromkeys(names))


def site_addresses() -> frozenset[str]:
    """The addresses this site answers on, as far as its own host names say."""
    names = tuple(_site_names())
    now = time.monotonic()
    cached = _site_cache.get(names)
    if cached is not None and now - cached[0] < _SITE_TTL_S:
        return cached[1]
    found: set[str] = set()
    for name in names:
        if (literal := _literal(name)) is not None:
            found.add(_spell(literal))
        elif not name.startswith("."):
            with contextlib.suppress(OSError, UnicodeError):
                found.update(_addresses(socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)))
    _site_cache[names] = (now, frozenset(found))
    return _site_cache[names][1]


def check_not_this_site(host: str, addresses: list[str], site: frozenset[str]) -> None:
    """ValueError when `host` is this site, by name or (given them) by address."""
    from django.http.request import validate_host

    if validate_host(host.rstrip("."), _site_names()) or site.intersection(addresses):
        raise ValueError(
            f"{host} is this Fusion Room site itself: a provider here would make every "
            "message start runs of its own. Use the panel directly instead."
        )


def _first_public(host: str, addresses: list[str]) -> str:
    """The first address, when all are public; else a ValueError saying why not."""
    if not addresses:
        raise ValueError(_does_not_resolve(host, "no addresses"))
    for address in addresses:
        if not is_public_address(ipaddress.ip_address(address)):
            where = f"{host} is" if _literal(host) else f"{host} resolves to {address},"
            raise ValueError(
                f"{where} not a public address: only public addresses may be used for "
                "your own providers (an administrator can add providers on private networks)"
            )
    return addresses[0]


def _addresses(infos: list) -> list[str]:
    found = [info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    return list(dict.fromkeys(found))  # unique, in the resolver's order


async def _resolve(host: str, port: int) -> list[str]:
    if (literal := _literal(host)) is not None:
        return [_spell(literal)]
    try:
        loop = asyncio.get_running_loop()
        return _addresses(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError) as exc:
        raise ValueError(_does_not_resolve(host, exc)) from None


async def resolve_public(host: str, port: int) -> str:
    """The first address `host` resolves to, if every one of them is public."""
    try:
        return _first_public(host, await _resolve(host, port))
    except ValueError as exc:
        raise ProviderError(str(exc), retryable=False, kind=ErrorKind.REFUSED_URL) from None


@dataclass(frozen=True)
class PinnedTarget:
    url: str  # the URL with its host replaced by the checked address
    host_header: str  # the original host (and port), for the Host header
    extensions: dict  # httpx request extensions: the TLS name for https


async def pin(url: str) -> PinnedTarget:
    """Check `url`, resolve it once, and aim the call at the address just checked."""
    try:
        url = check_url_shape(url)
    except ValueError as exc:
        raise ProviderError(
            f"the base URL is refused: {exc}", retryable=False, kind=ErrorKind.REFUSED_URL
        ) from None
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    default = DEFAULT_PORTS[parts.scheme]
    try:
        try:
            addresses = await _resolve(host, port or default)
        except ValueError:
            check_not_this_site(host, [], frozenset())  # this site's name, not resolvable here
            raise
        address = _first_public(host, addresses)
        check_not_this_site(host, [address], await asyncio.to_thread(site_addresses))
    except ValueError as exc:
        raise ProviderError(str(exc), retryable=False, kind=ErrorKind.REFUSED_URL) from None
    pinned = parts._replace(netloc=_netloc(address, port))
    return PinnedTarget(
        url=urlunsplit(pinned),
        host_header=_netloc(host, None if port in (None, default) else port),
        # httpcore sends this name for SNI and checks the certificate against it.
        extensions={"sni_hostname": host} if parts.scheme == "https" else {},
    )


def validate_public_base_url(url: str) -> str:
    """For forms: the normalised URL, if its host resolves only to public addresses."""
    url = check_url_shape(url)
    parts = urlsplit(url)
    host = parts.hostname or ""  # check_url_shape refused a URL without a host
    if (literal := _literal(host)) is not None:
        addresses = [_spell(literal)]
    else:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        try:
            addresses = _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            check_not_this_site(host, [], frozenset())  # this site's name, not resolvable here
            raise ValueError(_does_not_resolve(host, exc)) from None
    _first_public(host, addresses)
    check_not_this_site(host, addresses, site_addresses())
    return url

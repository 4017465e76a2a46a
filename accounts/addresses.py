"""The address a request came from, for throttles.

X-Forwarded-For is written by whoever sends the request, so it is read only when the
socket's peer is a proxy listed in TRUSTED_PROXIES, and then from the right: each
trusted proxy appends the address it saw, so the first untrusted hop from the right
is the client. Whatever a client wrote further left is never reached.
"""

from ipaddress import IPv4Address, IPv6Address, ip_address

from django.conf import settings
from django.http import HttpRequest

Address = IPv4Address | IPv6Address


def _parse(text: str) -> Address | None:
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def _trusted(address: Address) -> bool:
    return any(address in network for network in settings.TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> str:
    """The client's IP address, or "unknown" when nothing says it."""
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    remote = _parse(request.META.get("REMOTE_ADDR") or "")
    if remote is None:
        # No peer address: Daphne listens on a Unix socket, which only a process on
        # this machine can reach, so the peer is a local proxy and its last hop holds.
        remote = _parse(hops.pop()) if hops else None
        if remote is None:
            return "unknown"
    address = remote
    while hops and _trusted(address):
        previous = _parse(hops.pop())
        if previous is None:
            break  # no proxy writes that: the last hop believed is as far as we can see
        address = previous
    return str(address)

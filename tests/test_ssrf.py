"""The SSRF guard: user-supplied base URLs reach public addresses only.

No test resolves a public name (there is no internet here): public cases use IP
literals, and `localhost` is the real name that resolves to a private address.
"""

import ipaddress
import socket

import httpx
import pytest

from panels.providers import netguard
from panels.providers.base import ChatMessage, ChatRequest, Endpoint, ErrorKind, ProviderError
from panels.providers.netguard import (
    check_url_shape,
    is_public_address,
    pin,
    resolve_public,
    validate_public_base_url,
)
from panels.providers.openai import OpenAICompatibleProvider
from tests.scripted_server import Reply

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "Hello"),), max_tokens=8)
ONLY_PUBLIC = "only public addresses may be used for your own providers"

PRIVATE_URLS = [
    "http://10.0.0.1/v1",
    "http://172.16.5.4/v1",
    "https://192.168.1.1/v1",
    "http://127.0.0.1:8000/v1",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://100.64.0.1/v1",  # carrier-grade NAT
    "http://0.0.0.0:8000/v1",
    "http://[::1]:8000/v1",
    "http://[fe80::1]/v1",
    "http://[fc00::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",  # IPv4-mapped loopback
    "http://[::ffff:10.0.0.1]/v1",
    "http://[2002:c0a8:101::1]/v1",  # 6to4 of 192.168.1.1
    "http://localhost:8000/v1",  # a real name, resolving to loopback
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_pin_refuses_private_targets(url):
    with pytest.raises(ProviderError) as caught:
        await pin(url)
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert caught.value.retryable is False
    assert ONLY_PUBLIC in caught.value.message
    assert "administrator" in caught.value.message


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_form_validation_refuses_private_targets(url):
    with pytest.raises(ValueError, match=ONLY_PUBLIC):
        validate_public_base_url(url)


async def test_a_name_resolving_to_loopback_is_refused_and_named():
    with pytest.raises(ProviderError) as caught:
        await resolve_public("localhost", 80)
    message = caught.value.message
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert message.startswith("localhost resolves to ")
    address = message.removeprefix("localhost resolves to ").split(",")[0]
    assert ipaddress.ip_address(address).is_loopback


async def test_a_name_that_does_not_resolve_is_refused():
    # An empty label fails in the resolver's IDNA step: no DNS query is made.
    with pytest.raises(ProviderError) as caught:
        await resolve_public("bad..name", 443)
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert caught.value.retryable is False
    assert "bad..name does not resolve" in caught.value.message


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.8",  # IETF protocol assignments
        "198.18.0.1",  # benchmarking
        "192.0.2.1",  # documentation
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",  # multicast
        "239.1.2.3",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",  # site-local
        "ff0e::1",  # multicast
        "2001:db8::1",  # documentation
        "3fff::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::10.0.0.1",  # IPv4-compatible
        "::127.0.0.1",
        "64:ff9b::10.0.0.1",  # NAT64
        "64:ff9b::169.254.169.254",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_non_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81c::200e",
        "::ffff:93.184.216.34",  # mapped: reaches the public IPv4 address
        "64:ff9b::8.8.8.8",  # NAT64 of a public address
    ],
)
def test_public_addresses(address):
    assert is_public_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize(
    "url, says",
    [
        ("ftp://example.com/v1", "must start with http:// or https:// (not ftp://)"),
        ("example.com/v1", "must start with http:// or https://"),
        ("https:///v1", "needs a host"),
        ("https://user:secret@example.com/v1", "remove the user name and password"),
        ("https://user@example.com/v1", "remove the user name and password"),
        ("https://example.com/v1#top", "remove the fragment"),
        ("https://example.com:0/v1", "port must be a number from 1 to 65535"),
        ("https://example.com:70000/v1", "port must be a number from 1 to 65535"),
        ("https://example.com:http/v1", "port must be a number from 1 to 65535"),
        ("https://bad..name/v1", "not a valid host name"),
        ("https://[not-an-ip]/v1", "not a valid URL"),
    ],
)
def test_shape_errors_say_what_to_fix(url, says):
    with pytest.raises(ValueError) as caught:
        check_url_shape(url)
    assert says in str(caught.value)


async def test_pin_turns_shape_errors_into_refusals():
    with pytest.raises(ProviderError) as caught:
        await pin("ftp://93.184.216.34/v1")
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert "http:// or https://" in caught.value.message


@pytest.mark.parametrize(
    "url, normal",
    [
        (" HTTPS://API.Example.COM:8443/v1?x=1 ", "https://api.example.com:8443/v1?x=1"),
        ("http://example.com", "http://example.com"),
        ("https://[2606:4700:4700:0::1111]/v1", "https://[2606:4700:4700::1111]/v1"),
        ("https://bücher.example/v1", "https://xn--bcher-kva.example/v1"),
    ],
)
def test_shape_check_normalises(url, normal):
    assert check_url_shape(url) == normal


async def test_pin_an_ip_literal_over_https():
    target = await pin("https://93.184.216.34:8443/v1?a=b")
    assert target.url == "https://93.184.216.34:8443/v1?a=b"
    assert target.host_header == "93.184.216.34:8443"
    assert target.extensions == {"sni_hostname": "93.184.216.34"}


async def test_pin_an_ipv6_literal_and_default_ports():
    target = await pin("https://[2606:4700:4700::1111]:443/v1")
    assert target.url == "https://[2606:4700:4700::1111]:443/v1"
    assert target.host_header == "[2606:4700:4700::1111]"
    assert target.extensions == {"sni_hostname": "2606:4700:4700::1111"}
    plain = await pin("http://93.184.216.34/v1")
    assert (plain.url, plain.host_header, plain.extensions) == (
        "http://93.184.216.34/v1",
        "93.184.216.34",
        {},
    )


def test_form_validation_accepts_public_literals():
    assert validate_public_base_url("https://93.184.216.34/v1") == "https://93.184.216.34/v1"
    assert validate_public_base_url("https://[2606:4700:4700::1111]/v1").startswith("https://[")


def test_form_validation_reports_names_that_do_not_resolve():
    # The shape check catches this name before any resolver is asked.
    with pytest.raises(ValueError, match="not a valid host name"):
        validate_public_base_url("https://bad..name/v1")


async def test_pin_replaces_a_name_with_the_address_it_resolved_to(monkeypatch, settings):
    """The name is resolved for real (localhost); only the policy is relaxed, to see
    the rewrite a public name would get."""
    monkeypatch.setattr(netguard, "is_public_address", lambda ip: True)
    settings.ALLOWED_HOSTS = ["fusion.example.com"]  # localhost is not this site here
    target = await pin("https://localhost:8443/v1?x=1")
    address = target.url.removeprefix("https://").split("/")[0].rsplit(":", 1)[0]
    assert ipaddress.ip_address(address.strip("[]")).is_loopback
    assert target.url.endswith(":8443/v1?x=1")
    assert target.host_header == "localhost:8443"
    assert target.extensions == {"sni_hostname": "localhost"}


async def call(endpoint: Endpoint) -> list:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        provider = OpenAICompatibleProvider(endpoint, client)
        return [event async for event in provider.stream(REQUEST)]


async def test_public_only_endpoint_never_reaches_a_loopback_server(server):
    server.enqueue(Reply.stream(["should not be sent"]))
    endpoint = Endpoint(
        kind="openai", base_url=f"http://127.0.0.1:{server.port}/v1", public_only=True
    )
    with pytest.raises(ProviderError) as caught:
        await call(endpoint)
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert server.requests == []


async def test_public_only_endpoint_by_name_never_reaches_a_loopback_server(server):
    endpoint = Endpoint(
        kind="openai", base_url=f"http://localhost:{server.port}/v1", public_only=True
    )
    with pytest.raises(ProviderError) as caught:
        await call(endpoint)
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert server.requests == []


async def test_site_wide_endpoint_reaches_the_same_server(server):
    server.enqueue(Reply.stream(["ok"]))
    endpoint = Endpoint(
        kind="openai", base_url=f"http://127.0.0.1:{server.port}/v1", public_only=False
    )
    events = await call(endpoint)
    assert any(getattr(e, "text", None) == "ok" for e in events)
    assert len(server.requests) == 1


async def test_a_pinned_call_connects_to_the_address_and_sends_the_name(
    server, monkeypatch, settings
):
    """End to end through a name: the connection goes to the checked address and
    the Host header still carries the name (policy relaxed, resolution real)."""
    settings.ALLOWED_HOSTS = ["fusion.example.com"]
    first = socket.getaddrinfo("localhost", server.port, type=socket.SOCK_STREAM)[0][4][0]
    if first != "127.0.0.1":
        pytest.skip(f"localhost resolves to {first} first; the server listens on 127.0.0.1")
    monkeypatch.setattr(netguard, "is_public_address", lambda ip: True)
    server.enqueue(Reply.stream(["ok"]))
    endpoint = Endpoint(
        kind="openai", base_url=f"http://localhost:{server.port}/v1", public_only=True
    )
    await call(endpoint)
    assert server.requests[0]["headers"]["Host"] == f"localhost:{server.port}"
    assert server.requests[0]["path"] == "/v1/chat/completions"


async def test_refusal_names_an_ipv4_mapped_address_readably():
    with pytest.raises(ProviderError) as caught:
        await pin("http://[::ffff:127.0.0.1]/v1")
    assert caught.value.message.startswith("::ffff:127.0.0.1 is not a public address")


def test_a_base_url_naming_this_site_is_refused(settings):
    """A user's provider aimed at this site's own /v1 would turn each message into
    nested runs on the site's keys: refused by name, by a wildcard, and by address."""
    settings.ALLOWED_HOSTS = ["fusion.example.com", ".example.org", "8.8.8.8"]
    for url in (
        "https://fusion.example.com/v1",
        "https://FUSION.example.com./v1",
        "https://api.example.org/v1",
        "http://8.8.8.8/v1",
    ):
        with pytest.raises(ValueError, match="this Fusion Room site itself"):
            validate_public_base_url(url)


async def test_a_call_to_this_site_by_address_is_refused_before_connecting(settings):
    settings.ALLOWED_HOSTS = ["8.8.4.4"]
    with pytest.raises(ProviderError, match="this Fusion Room site itself") as caught:
        await pin("https://8.8.4.4/v1")
    assert caught.value.kind == ErrorKind.REFUSED_URL
    assert not caught.value.retryable


def test_with_allowed_hosts_star_the_trusted_origins_still_name_this_site(settings):
    """`*` names no host; the site's public origin (CSRF_TRUSTED_ORIGINS) still does, so a
    provider aimed at it is refused (settings.py refuses `*` alone when DEBUG is off)."""
    settings.ALLOWED_HOSTS = ["*"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://Fusion.example.com:8443"]
    with pytest.raises(ValueError, match="this Fusion Room site itself"):
        validate_public_base_url("https://fusion.example.com/v1")
    validate_public_base_url("https://8.8.8.8/v1")  # any other public host is still fine

"""Guessing passwords is throttled: per username (whatever the address) and per
address (whatever the username), on the site's log-in and the admin's, and sign-ups
per address. Counted in the real Redis, as every web process shares it."""

import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import reverse

from accounts import throttle
from accounts.addresses import client_address
from tests.conftest import PASSWORD, wait_until

THROTTLED = "Too many failed attempts; try again in"


@pytest.fixture(autouse=True)
def counts(settings, redis_ready):
    """Small limits, and no count left over from another test."""
    settings.LOGIN_FAILURES_PER_USERNAME = 3
    settings.LOGIN_FAILURES_PER_ADDRESS = 100
    settings.AUTH_THROTTLE_WINDOW_S = 900
    settings.TRUSTED_PROXIES = []

    url = settings.REDIS_URL  # a test may point the setting at a dead Redis

    def forget():
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{throttle.PREFIX}*"))
        if keys:
            client.delete(*keys)
        client.close()

    forget()
    yield
    forget()


def log_in(client, username, password, address="10.0.0.1", url=None, **headers):
    return client.post(
        url or reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def assert_throttled(response, wait: str, seconds: int = 900):
    assert response.status_code == 429
    assert f"{THROTTLED} {wait}." in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= seconds


def test_a_username_is_throttled_whatever_the_address(client, alice, bob):
    for i in range(3):
        response = log_in(client, "alice", "wrong", address=f"10.0.0.{i + 1}")
        assert response.status_code == 200 and "correct username and password" in (
            response.content.decode()
        )
    # The right password, from yet another address: refused while throttled.
    assert_throttled(log_in(client, "alice", PASSWORD, address="10.0.0.9"), "15 minutes")
    assert "_auth_user_id" not in client.session
    # Someone else from the same address is not held up.
    assert log_in(client, "bob", PASSWORD, address="10.0.0.9").status_code == 302


def test_an_address_is_throttled_whatever_the_username(client, alice, settings):
    settings.LOGIN_FAILURES_PER_USERNAME, settings.LOGIN_FAILURES_PER_ADDRESS = 100, 3
    for name in ("root", "admin", "bob"):
        assert log_in(client, name, "guess", address="192.0.2.7").status_code == 200
    assert_throttled(log_in(client, "alice", PASSWORD, address="192.0.2.7"), "15 minutes")
    assert log_in(client, "alice", PASSWORD, address="192.0.2.8").status_code == 302


def test_the_throttle_lifts_when_its_window_ends(client, alice, settings):
    settings.AUTH_THROTTLE_WINDOW_S = 1
    for _ in range(3):
        log_in(client, "alice", "wrong")
    assert_throttled(log_in(client, "alice", PASSWORD), "1 minute", 1)

    def unthrottled():
        response = log_in(client, "alice", PASSWORD)
        return response if response.status_code != 429 else None

    response = wait_until(unthrottled, 5, "the throttle to lift after its 1 s window", every=0.2)
    assert response.status_code == 302


def test_right_passwords_do_not_count_against_a_shared_address(client, alice, settings):
    """An office behind one address: people who log in fine never throttle it."""
    settings.LOGIN_FAILURES_PER_ADDRESS = 2
    for _ in range(5):
        assert log_in(client, "alice", PASSWORD).status_code == 302
        client.logout()
    assert log_in(client, "alice", "typo").status_code == 200
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_address_count(client, alice, settings):
    settings.LOGIN_FAILURES_PER_USERNAME, settings.LOGIN_FAILURES_PER_ADDRESS = 100, 3
    for i in range(3):
        log_in(client, f"user{i}", "guess", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    response = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert_throttled(response, "15 minutes")


def test_behind_a_trusted_proxy_each_client_is_counted_apart(client, alice, settings):
    settings.LOGIN_FAILURES_PER_USERNAME, settings.LOGIN_FAILURES_PER_ADDRESS = 100, 3
    from ipaddress import ip_network

    settings.TRUSTED_PROXIES = [ip_network("10.1.0.0/16")]
    proxy = {"address": "10.1.0.5"}
    for i in range(3):
        log_in(client, f"user{i}", "guess", HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy)
    guesser = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy)
    assert_throttled(guesser, "15 minutes")
    other = log_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.2", **proxy)
    assert other.status_code == 302


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # no proxy configured: the socket
        ("203.0.113.9", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.9"),  # not from the proxy
        ("10.0.0.2", "6.6.6.6, 198.51.100.4", ["10.0.0.0/8"], "198.51.100.4"),
        # Two proxies in a row; what the client wrote on the left is never reached.
        ("10.0.0.2", "6.6.6.6, 198.51.100.4, 10.0.0.3", ["10.0.0.0/8"], "198.51.100.4"),
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),  # a proxy that forwarded nothing
        ("::ffff:192.0.2.1", "", [], "192.0.2.1"),  # IPv4 written as IPv6
        # A Unix socket: only a local proxy can reach it; its last hop holds.
        ("", "6.6.6.6, 198.51.100.4", [], "198.51.100.4"),
        ("", "", [], "unknown"),
    ],
)
def test_the_client_address(settings, remote, forwarded, trusted, expected):
    from ipaddress import ip_network

    settings.TRUSTED_PROXIES = [ip_network(n) for n in trusted]
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_the_admin_log_in_shares_the_count(client, db):
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    admin_login = reverse("admin:login")
    for _ in range(2):
        assert log_in(client, "root", "wrong", url=admin_login).status_code == 200
    log_in(client, "root", "wrong")  # the third failure, on the site's page
    assert_throttled(log_in(client, "root", PASSWORD, url=admin_login), "15 minutes")
    assert "_auth_user_id" not in client.session


def test_sign_ups_are_throttled_per_address(client, db, settings):
    settings.SIGNUP, settings.SIGNUP_ATTEMPTS_PER_ADDRESS = "open", 2
    for name in ("dora", "erin"):
        data = {"username": name, "password1": PASSWORD, "password2": "mismatch"}
        assert client.post(reverse("signup"), data).status_code == 400
    data = {"username": "fred", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post(reverse("signup"), data)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    text = response.content.decode()
    assert "Too many sign-up attempts from your address; try again in 15 minutes." in text
    assert not get_user_model().objects.filter(username="fred").exists()
    other = client.post(reverse("signup"), data, REMOTE_ADDR="10.3.3.3")
    assert other.status_code == 302


def test_without_redis_logging_in_is_refused_with_a_reason(client, alice, settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 503
    assert "cannot reach Redis" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_password_change_is_throttled_on_the_log_in_count(client, alice):
    client.force_login(alice)
    url = reverse("password_change")
    new = {"new_password1": "another-long-pw-9", "new_password2": "another-long-pw-9"}
    for _ in range(3):
        response = client.post(url, {"old_password": "wrong", **new}, REMOTE_ADDR="10.0.0.5")
        assert response.status_code == 200 and "incorrectly" in response.content.decode()
    # The right old password is refused too while the username is throttled.
    response = client.post(url, {"old_password": PASSWORD, **new}, REMOTE_ADDR="10.0.0.5")
    assert_throttled(response, "15 minutes")
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    # And the guesses count at the log-in page too: the username is throttled there.
    client.logout()
    assert_throttled(log_in(client, "alice", PASSWORD, address="10.0.0.6"), "15 minutes")


def test_the_password_change_works_with_the_right_old_password(client, alice):
    client.force_login(alice)
    new = {"new_password1": "another-long-pw-9", "new_password2": "another-long-pw-9"}
    response = client.post(
        reverse("password_change"), {"old_password": PASSWORD, **new}, REMOTE_ADDR="10.0.0.5"
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another-long-pw-9")

"""Accounts: signing up (open, by invite, or closed), logging in and out.

The test settings run with DEBUG off, as production does, so sign-ups are closed
unless a test opens them."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import redis
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts import throttle
from accounts.models import Invite
from tests.conftest import PASSWORD, ROOT


@pytest.fixture(autouse=True)
def fresh_throttle(settings):
    """Sign-ups and log-ins here all come from 127.0.0.1: start each test uncounted."""

    def forget():
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{throttle.PREFIX}*"))
        if keys:
            client.delete(*keys)
        client.close()

    forget()
    yield
    forget()


def sign_up(client, username: str, **extra):
    data = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
    return client.post(reverse("signup"), data | extra)


def test_sign_up_logs_in_and_lands_in_chat(client, db, settings):
    settings.SIGNUP = "open"
    response = sign_up(client, "dora")
    assert response.status_code == 302 and response.url == reverse("chat:home")
    page = client.get(reverse("chat:home"))
    assert page.status_code == 200
    for label in ("Chat", "Panels", "API keys", "Account"):
        assert f">{label}</a>" in page.content.decode()
    assert get_user_model().objects.filter(username="dora").exists()


def test_sign_up_with_mismatched_passwords_explains(client, db, settings):
    settings.SIGNUP = "open"
    response = client.post(
        reverse("signup"), {"username": "dora", "password1": PASSWORD, "password2": "other"}
    )
    assert response.status_code == 400
    assert "The two password fields didn" in response.content.decode()


def test_closed_sign_ups_say_whom_to_ask_and_hide_the_link(client, db, settings):
    settings.SIGNUP = "closed"
    page = client.get(reverse("signup"))
    assert page.status_code == 403
    text = page.content.decode()
    assert "Sign-ups are closed" in text and "Ask an administrator" in text
    assert 'name="password1"' not in text
    assert sign_up(client, "dora").status_code == 403
    assert not get_user_model().objects.filter(username="dora").exists()
    login = client.get(reverse("login")).content.decode()
    assert reverse("signup") not in login  # neither the page's link nor the menu's
    settings.SIGNUP = "open"
    assert reverse("signup") in client.get(reverse("login")).content.decode()


def _signup_default(tmp_path, **env) -> str:
    """SIGNUP as a freshly started process reads it from its environment."""
    child = {k: v for k, v in os.environ.items() if k not in ("SIGNUP", "DEBUG")}
    child |= {
        "DJANGO_SETTINGS_MODULE": "fusionroom.settings",
        "FUSIONROOM_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 40,
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", "from fusionroom import settings; print(settings.SIGNUP)"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return (result.stdout + result.stderr).strip()


def test_sign_ups_are_closed_in_production_and_open_in_development(tmp_path):
    assert _signup_default(tmp_path, DEBUG="false") == "closed"
    assert _signup_default(tmp_path, DEBUG="true") == "open"  # make run
    assert _signup_default(tmp_path, DEBUG="false", SIGNUP="invite") == "invite"
    assert "SIGNUP='anyone': use open, invite or closed." in _signup_default(
        tmp_path, SIGNUP="anyone"
    )


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser("root", password=PASSWORD)


def make_invite(client, staff, **fields) -> str:
    """An invite made as staff do, in the admin; returns the code it showed once."""
    client.force_login(staff)
    data = {"note": "for dora", "max_uses": "1", "expires_at_0": "", "expires_at_1": ""}
    later = timezone.now() + timedelta(days=7)
    data["expires_at_0"], data["expires_at_1"] = f"{later:%Y-%m-%d}", f"{later:%H:%M:%S}"
    response = client.post(reverse("admin:accounts_invite_add"), data | fields, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    client.logout()
    [message] = [m for m in shown if "invite code is" in m]
    code = message.split("invite code is ")[1].split(" ")[0]
    invite = Invite.objects.get()
    assert code not in invite.code_hash and len(invite.code_hash) == 64  # kept hashed
    assert f"?invite={code}" in message  # a link that fills the code in
    return code


def test_an_invite_made_in_the_admin_lets_one_person_sign_up(client, staff, settings):
    settings.SIGNUP = "invite"
    code = make_invite(client, staff)
    page = client.get(f"{reverse('signup')}?invite={code}").content.decode()
    assert "Invite code" in page and f'value="{code}"' in page

    wrong = sign_up(client, "dora", invite="not-a-code")
    assert wrong.status_code == 400 and "This invite code is not valid" in wrong.content.decode()
    missing = sign_up(client, "dora")
    assert missing.status_code == 400 and "This field is required" in missing.content.decode()
    assert not get_user_model().objects.filter(username="dora").exists()

    assert sign_up(client, "dora", invite=code).status_code == 302
    assert Invite.objects.get().uses == 1
    client.logout()
    again = sign_up(client, "erin", invite=code)
    assert again.status_code == 400
    assert "already been used; ask an administrator" in again.content.decode()
    assert not get_user_model().objects.filter(username="erin").exists()


def test_an_invite_counts_only_accounts_made_and_ends_at_its_expiry(client, staff, settings):
    settings.SIGNUP = "invite"
    code = make_invite(client, staff, max_uses="2")
    # A sign-up that fails for another reason uses nothing.
    assert sign_up(client, "dora", invite=code, password2="other").status_code == 400
    assert Invite.objects.get().uses == 0
    assert sign_up(client, "dora", invite=code).status_code == 302
    client.logout()
    Invite.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    expired = sign_up(client, "erin", invite=code)
    assert expired.status_code == 400 and "This invite code expired on" in expired.content.decode()
    assert Invite.objects.get().uses == 1


def test_log_in_and_out(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("account")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("account")).status_code == 302


def test_pages_need_a_login(client, db):
    for name in ("chat:home", "panels:list", "panels:api_keys", "account"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/accounts/login/" in response.url


def test_pages_carry_a_strict_content_security_policy(client, alice):
    client.force_login(alice)
    policy = client.get(reverse("chat:home")).headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy

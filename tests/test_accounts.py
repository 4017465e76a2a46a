from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.conftest import PASSWORD


def test_sign_up_logs_in_and_lands_in_chat(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response.url == reverse("chat:home")
    page = client.get(reverse("chat:home"))
    assert page.status_code == 200
    for label in ("Chat", "Panels", "API keys", "Account"):
        assert f">{label}</a>" in page.content.decode()
    assert get_user_model().objects.filter(username="dora").exists()


def test_sign_up_with_mismatched_passwords_explains(client, db):
    response = client.post(
        reverse("signup"), {"username": "dora", "password1": PASSWORD, "password2": "other"}
    )
    assert response.status_code == 400
    assert "The two password fields didn" in response.content.decode()


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

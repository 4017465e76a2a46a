"""A bad setting stops start-up with a message naming the variable."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_int, env_origins, env_url


def start_django(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    clean |= {"DJANGO_SETTINGS_MODULE": "fusionroom.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_key_required_when_debug_is_off():
    result = start_django(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_bad_boolean_names_the_variable():
    result = start_django(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_bad_database_url_names_the_variable():
    result = start_django(DEBUG="true", DATABASE_URL="mysql://x@y/z")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_good_environment_starts():
    result = start_django(DEBUG="true", ALLOWED_HOSTS="example.org")
    assert result.returncode == 0, result.stderr


def test_typed_helpers(monkeypatch):
    monkeypatch.setenv("X_INT", "12a")
    with pytest.raises(ImproperlyConfigured, match="X_INT='12a' is not a whole number"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "5")
    with pytest.raises(ImproperlyConfigured, match="out of range"):
        env_int("X_INT", 1, minimum=10)
    monkeypatch.setenv("X_BOOL", "On")
    assert env_bool("X_BOOL") is True
    monkeypatch.setenv("X_URL", "http://redis")
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        env_url("X_URL", "redis://x", ("redis",))
    monkeypatch.setenv("X_ORIGINS", "example.org")
    with pytest.raises(ImproperlyConfigured, match="https://example.org"):
        env_origins("X_ORIGINS")


def test_allowed_hosts_star_alone_is_refused_in_production():
    """`*` would turn off the check that refuses a provider aimed at this site itself."""
    key = {"DEBUG": "false", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "*"}
    result = start_django(**key)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS=* names no host of this site" in result.stderr
    named = start_django(**key, CSRF_TRUSTED_ORIGINS="https://chat.example.org")
    assert named.returncode == 0, named.stderr
    assert start_django(**key | {"ALLOWED_HOSTS": "chat.example.org,*"}).returncode == 0

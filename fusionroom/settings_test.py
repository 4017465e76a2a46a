"""Settings for the test suite: isolates Redis and ports from a running dev instance."""

import os

# Must be set before the main settings read the environment.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LOCAL_MODELS_PORT", "18081")
os.environ["DEBUG"] = "false"  # tests run as production does
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-django-checks")
os.environ.setdefault("DEFAULT_MAX_TOKENS", "160")  # keeps real-model tests short

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""Settings for the test suite: isolates Redis and ports from a running dev instance."""

import os

# Must be set before the main settings read the environment.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LOCAL_MODELS_PORT", "18081")
os.environ["DEBUG"] = "false"  # tests run as production does
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-django-checks")
# Keep real-model tests short.
os.environ.setdefault("DEFAULT_MAX_TOKENS", "96")
os.environ.setdefault("JUDGE_MAX_TOKENS", "400")
os.environ.setdefault("SYNTHESIZER_MAX_TOKENS", "120")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

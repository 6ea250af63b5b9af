"""Settings shared by every environment, read from the environment with django-environ.

SECRET_KEY is set per environment: production.py reads it with no default, local and test use placeholders.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ

from .broker import celery_settings
from .database import for_pooler

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    "selfos",
    "outbox",
    "tasks_app",
    "workers",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "selfos.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last: it turns a login locked out for too many failures into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "selfos.urls"
WSGI_APPLICATION = "selfos.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
# A pooled connection that died with a PostgreSQL restart is replaced, not reused.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
DATABASES["default"] = for_pooler(env("DATABASE_POOLER", default=""), DATABASES["default"])  # see database.py
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker and cache ---------------------------------------------
REDIS_URL = env("REDIS_URL")

# OpenTelemetry traces over OTLP/HTTP (selfos/tracing.py): on when a collector is named.
SELFOS_TRACING = env.bool(
    "SELFOS_TRACING",
    default=bool(
        env("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
        or env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
    ),
)
CACHES = {
    "default": {
        "BACKEND": "selfos.cache.RedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        "KEY_PREFIX": "selfos",
    }
}

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
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Requests larger than this get a JSON 413 instead of being parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_MAX_BODY_BYTES", default=1_048_576)

# How many reverse proxies stand in front: their X-Forwarded-For entries are trusted, for
# DRF's throttles and for django-axes alike; 0 means the header is ignored.
NUM_PROXIES = env.int("DJANGO_NUM_PROXIES", default=0)

# --- Failed logins (django-axes) --------------------------------------------
# Three limits, each over the cool-off (selfos/accounts/lockout.py, README "Security"): a
# (username, address) pair is locked out after SELFOS_LOGIN_FAILURE_LIMIT failures; an address,
# for every username, after SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT; a username, from every address
# but those it logged in from within SELFOS_LOGIN_KNOWN_ADDRESS_DAYS, after
# SELFOS_LOGIN_USERNAME_FAILURE_LIMIT.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "selfos.accounts.lockout.LoginLockoutHandler"
AXES_FAILURE_LIMIT = env.int("SELFOS_LOGIN_FAILURE_LIMIT", default=10)
SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("SELFOS_LOGIN_ADDRESS_FAILURE_LIMIT", default=100)
SELFOS_LOGIN_USERNAME_FAILURE_LIMIT = env.int("SELFOS_LOGIN_USERNAME_FAILURE_LIMIT", default=50)
SELFOS_LOGIN_KNOWN_ADDRESS_DAYS = env.int("SELFOS_LOGIN_KNOWN_ADDRESS_DAYS", default=90)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("SELFOS_LOGIN_COOLOFF_MINUTES", default=15))
# What axes records and resets on success: the pair. The wider counts are the handler's.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "selfos.api.lockout_response"
# The client's address as DRF's throttles see it.
AXES_IPWARE_PROXY_COUNT = NUM_PROXIES or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if AXES_IPWARE_PROXY_COUNT else ("REMOTE_ADDR",)
)

# --- REST framework -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "selfos.api.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "selfos.api.exception_handler",
    # Every authenticated request counts against its user; register and token against the
    # client's address ("auth"); memory search, which runs the model in the web process, has
    # a tighter scope of its own. A 429 carries Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "auth": env("SELFOS_AUTH_THROTTLE", default="20/minute"),
        "user": env("SELFOS_USER_THROTTLE", default="600/minute"),
        "memory_search": env("SELFOS_SEARCH_THROTTLE", default="30/minute"),
    },
    "NUM_PROXIES": NUM_PROXIES,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SelfOS API",
    "DESCRIPTION": "Goals, projects and tasks; completing a task fans out to progress, "
    "story, notifications and semantic memory through a transactional outbox.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from the drf-spectacular-sidecar package, so the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Clients send JSON. Documenting form and multipart bodies too (DRF's default parsers,
    # which the browsable API's forms still use) made generated clients fail to import.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
}

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
# One message at a time per worker process: with acks_late, a prefetched message
# would sit behind a slow one instead of going to an idle worker.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup would close the database connections around every task; selfos/celery.py
# closes them as Django does around a request instead (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = 2**62
# Transport options, queue types (quorum on RabbitMQ), ...: Redis or RabbitMQ, see broker.py.
globals().update(celery_settings(CELERY_BROKER_URL, env))
# Task events (what Flower shows) are a few broker publishes per message, sent whether anyone
# listens or not: about 10 ms of CPU per completion at 15/s (`python -m bench.steady`). Off
# unless asked for: Flower turns the workers' on when it starts (--enable_events, on by
# default), and they stay on until the worker restarts. task-sent, which the sender emits,
# only CELERY_TASK_EVENTS turns on.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = CELERY_WORKER_SEND_TASK_EVENTS

# --- Outbox ---------------------------------------------------------------
# Only what the environment sets (OUTBOX_RELAY_INTERVAL=0.5, ...): every default lives in
# outbox/conf.py, and the outbox adds its own beat entries and task router (outbox/schedule.py).
_OUTBOX_FROM_ENV = {
    "RELAY_INTERVAL": env.float,
    "RELAY_BATCH_SIZE": env.int,
    "RELAY_TIME_BUDGET": env.float,
    "RELAY_MIN_SPACING": env.float,
    "MESSAGE_BATCH_SIZE": env.int,
    "LEASE_SECONDS": env.int,
    "LEASE_MAX_SECONDS": env.int,
    "GROUP_COMMIT_SECONDS": env.float,
    "TAKE_WAITING": env.bool,
    "COALESCE_MESSAGES": env.bool,
    "FAIR_SHARE": env.bool,
    "OWNER_KEY": env.str,
    "EXPRESS_LANE": env.bool,
    "EXPRESS_BACKLOG": env.int,
    "EXPRESS_OWNER_LIMIT": env.int,
    "QUEUED_MARK_SECONDS": env.float,
    "INFRASTRUCTURE_RETRY_MAX_SECONDS": env.float,
    "SWEEP_INTERVAL": env.float,
    "SWEEP_BATCH_SIZE": env.int,
    "RETENTION_DAYS": env.float,
    "RETENTION_BATCH_SIZE": env.int,
    "RETENTION_INTERVAL": env.float,
    "KICK": env.bool,
    "EVENTLOG_PARTITIONS_AHEAD": env.int,
    "EVENTLOG_PARTITIONS_INTERVAL": env.float,
    "EVENTLOG_EXPORT_CHUNK": env.int,
    # A secret: the key of the keyed hash that pseudonymizes owners in `events dataset`. No
    # default here or in production; only a DEBUG (development) run falls back to a fixed key.
    "EVENTLOG_PSEUDONYM_KEY": env.str,
}
OUTBOX = {
    key: read(f"OUTBOX_{key}") for key, read in _OUTBOX_FROM_ENV.items() if f"OUTBOX_{key}" in os.environ
}
# The project's own periodic tasks (the outbox adds its own). They run on the outbox's queue,
# the one the relay worker takes with the other maintenance tasks.
CELERY_IMPORTS = ["selfos.accounts.tasks"]
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "accounts-prune-login-records": {
        "task": "selfos.accounts.prune_login_records",
        "schedule": 3600.0,
        "options": {"queue": "outbox", "expires": 3600},
    },
}

# --- Subscribers ----------------------------------------------------------
# Pluggable parts: a short name below or a dotted path, checked at start (workers/pluggables.py).
# story: "template" (offline, the default) or "openai" (any OpenAI-compatible server)
STORY_WRITER = env("STORY_WRITER", default="template")
STORY_LLM_BASE_URL = env("STORY_LLM_BASE_URL", default="http://127.0.0.1:11434/v1")
STORY_LLM_MODEL = env("STORY_LLM_MODEL", default="llama3.2")
STORY_LLM_API_KEY = env("STORY_LLM_API_KEY", default="")
STORY_LLM_TIMEOUT = env.float("STORY_LLM_TIMEOUT", default=30.0)
# notifications: "console" (logs), "locmem" (tests) or "fcm" (Firebase Cloud Messaging)
PUSH_BACKEND = env("PUSH_BACKEND", default="console")
FCM_CREDENTIALS_FILE = env("FCM_CREDENTIALS_FILE", default="")
FCM_PROJECT_ID = env("FCM_PROJECT_ID", default="")

# memory: "pgvector" (same PostgreSQL, the default) or "weaviate"
MEMORY_STORE = env("MEMORY_STORE", default="pgvector")
WEAVIATE_URL = env("WEAVIATE_URL", default="http://127.0.0.1:8080")
WEAVIATE_GRPC_PORT = env.int("WEAVIATE_GRPC_PORT", default=50051)
WEAVIATE_API_KEY = env("WEAVIATE_API_KEY", default="")
WEAVIATE_COLLECTION = env("WEAVIATE_COLLECTION", default="TaskMemory")
# The embedding model's runtime: "onnx" (ONNX Runtime, ~3x faster here) or "torch" (the
# reference). The ONNX file is exported from the reference on first use and cached here.
MEMORY_EMBEDDING_RUNTIME = env("MEMORY_EMBEDDING_RUNTIME", default="onnx")
MEMORY_MODEL_CACHE = env.path("MEMORY_MODEL_CACHE", default=BASE_DIR / "var" / "models")

# Caps on what one user can make the service store or compute; past one, the API answers a
# 400 that names the limit and changes nothing.
# Media attachments on one task (each is copied into memory, the story and its prompt).
SELFOS_MAX_MEDIA_PER_TASK = env.int("SELFOS_MAX_MEDIA_PER_TASK", default=50)
# How many of them a task's own response nests; the rest are a page away at `media_url`.
SELFOS_TASK_MEDIA_PREVIEW = env.int("SELFOS_TASK_MEDIA_PREVIEW", default=10)
# Active push devices per user (every push goes to each one).
SELFOS_MAX_DEVICES_PER_USER = env.int("SELFOS_MAX_DEVICES_PER_USER", default=10)
# A push token's length in UTF-8 bytes (FCM's are ~160, APNs' 64, a Web Push subscription < 1 kB).
SELFOS_MAX_DEVICE_TOKEN_BYTES = env.int("SELFOS_MAX_DEVICE_TOKEN_BYTES", default=4096)
# A memory search's query, in characters: the embedding model reads at most 256 word pieces
# (~1,000 characters of English) and ignores the rest, so a longer query buys nothing.
SELFOS_MAX_SEARCH_QUERY_CHARS = env.int("SELFOS_MAX_SEARCH_QUERY_CHARS", default=500)

# --- Metrics -------------------------------------------------------------------
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])

# --- Logging --------------------------------------------------------------
LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if env.bool("LOG_JSON", default=False) else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Celery's own "received / succeeded" lines, once a second for the relay
        # alone; the outbox logs every delivery with its ids instead.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        # One line per HTTP request (Weaviate, the story writer): too much at INFO.
        "httpx": {"level": "WARNING"},
    },
}
# Workers log through the LOGGING above (plain or JSON), not Celery's own setup.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

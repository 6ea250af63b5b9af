"""Settings for the test suite: real PostgreSQL and Redis (a database of its own), fast hashing."""

from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import OUTBOX, env
from .broker import celery_settings

DEBUG = False
SECRET_KEY = "test-insecure"  # noqa: S105
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None  # nothing collected here: files come from the apps (finders)
# Tests keep their own Redis database so they never consume a running service's queues.
REDIS_URL = env("TEST_REDIS_URL", default=urlunsplit(urlsplit(REDIS_URL)._replace(path="/15")))  # noqa: F405
# Redis unless SELFOS_TEST_BROKER_URL says otherwise: the broker-matrix fixture (tests/brokers.py)
# sets it for the worker processes it starts on RabbitMQ (a vhost of the test run's own).
CELERY_BROKER_URL = env("SELFOS_TEST_BROKER_URL", default=REDIS_URL)
globals().update(celery_settings(CELERY_BROKER_URL, env))
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {  # noqa: F405
    "auth": "1000/minute",
    "user": "100000/minute",
    "memory_search": "100000/minute",
}
# Off but in the tests about it: client.login() authenticates without a request, which axes refuses.
AXES_ENABLED = False
OUTBOX = {**OUTBOX, "RELAY_INTERVAL": 0.2, "SWEEP_INTERVAL": 0.5}
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
# Close connections after every Celery task and request, so the in-thread test
# worker holds none open when the test database is flushed or dropped. A worker process
# started by a test may keep them (SELFOS_TEST_CONN_MAX_AGE): its test stops it first.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("SELFOS_TEST_CONN_MAX_AGE", default=0)  # noqa: F405
# A worker process started by a test connects straight to pytest-django's test database.
if _test_db := env("SELFOS_TEST_DB_NAME", default=None):
    DATABASES["default"]["NAME"] = _test_db  # noqa: F405
PUSH_BACKEND = "locmem"

# Tests trace only when a test turns it on (tests/test_tracing.py, for its own worker): a
# collector named in the developer's environment does not make every test export spans.
SELFOS_TRACING = env.bool("SELFOS_TRACING", default=False)

"""Settings for production: every secret comes from the environment, no defaults.

Behind a TLS-terminating reverse proxy (Caddy or nginx) that sets X-Forwarded-Proto, with the
defaults below `manage.py check --deploy` reports nothing; each is an environment variable so a
deployment can loosen one knowingly, never by omission.
"""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")

# --- HTTPS ------------------------------------------------------------------
# The proxy terminates TLS and tells us the client's scheme. Trusting the header is only safe when
# the proxy overwrites it (Caddy does; nginx needs `proxy_set_header X-Forwarded-Proto $scheme`);
# set false when clients reach gunicorn directly.
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes and the Prometheus scraper call the container over the internal network in plain HTTP:
# a redirect to https would fail them. Patterns match the path without its leading slash.
SECURE_REDIRECT_EXEMPT = env.list(
    "DJANGO_SECURE_REDIRECT_EXEMPT", default=[r"^healthz$", r"^readyz$", r"^metrics$"]
)
# One year, subdomains included, preload-ready: what the preload list asks for. Try a new domain
# with a small value first (DJANGO_SECURE_HSTS_SECONDS=300): browsers remember the header.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)

# --- Metrics ----------------------------------------------------------------
# Behind a local reverse proxy every request comes from 127.0.0.1, so the loopback allow-list
# of local and test would make /metrics public: here a bearer token is required unless an
# operator lists the scraper's networks on purpose.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])

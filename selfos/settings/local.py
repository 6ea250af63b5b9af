"""Settings for a developer machine: `make run` and the shell."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-insecure-only-for-development")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
# Serve static files from the apps directly: no collectstatic needed on a dev box.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None  # nothing collected here: files come from the apps (finders)
WHITENOISE_AUTOREFRESH = True

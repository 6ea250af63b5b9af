"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

# Fail closed: without DJANGO_SETTINGS_MODULE, production settings, which stop at start-up
# when their secrets are missing. The Procfile's web process inherits local from `make run`.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.production")

application = get_wsgi_application()

"""The Celery app: every setting comes from Django settings under CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")

app = Celery("selfos")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

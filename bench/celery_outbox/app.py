"""django-celery-outbox's Celery app: `send_task` writes an outbox row instead of publishing."""

from django_celery_outbox import OutboxCelery

app = OutboxCelery("selfos-celery-outbox")
app.config_from_object("django.conf:settings", namespace="CELERY")

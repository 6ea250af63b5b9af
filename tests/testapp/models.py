"""Effects written by the tests' subscribers, so a test can count them."""

from django.db import models


class Effect(models.Model):
    subscriber = models.CharField(max_length=100)
    event_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.subscriber} effect of event {self.event_id}"

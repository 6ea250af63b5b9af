"""Owner keys on events and deliveries, for taking waiting work in turns across owners, and the
express lane's mark on deliveries.

Rows still waiting (pending events, deliveries dispatched or due a retry) get their owner
from the payload, so the first fair claims after the upgrade already see who owns them;
finished rows keep an empty key (nothing reads it for them).
"""

from django.db import migrations, models

from outbox import conf


def backfill(apps, schema_editor) -> None:
    key = conf.get("OWNER_KEY")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox_outboxevent SET owner_key = left(coalesce(payload ->> %s, ''), 64)"
            " WHERE status = 'pending'",
            [key],
        )
        cursor.execute(
            "UPDATE outbox_delivery AS d SET owner_key = left(coalesce(e.payload ->> %s, ''), 64)"
            " FROM outbox_outboxevent AS e"
            " WHERE d.event_id = e.id AND d.status IN ('dispatched', 'pending')",
            [key],
        )


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0005_event_trace_context"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="owner_key",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="delivery",
            name="owner_key",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="delivery",
            name="express",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["owner_key", "id"],
                name="outbox_event_pending_owner",
            ),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status", "dispatched")),
                fields=["subscriber", "owner_key", "id"],
                name="outbox_delivery_waiting",
            ),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status", "dispatched"), ("express", True)),
                fields=["subscriber", "id"],
                name="outbox_delivery_express",
            ),
        ),
    ]

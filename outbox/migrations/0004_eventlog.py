"""The event log: a table partitioned by month on committed_at, with a DEFAULT partition so that
no insert ever fails for want of a month's partition (outbox/eventlog/partitions.py makes them
ahead). The table is made with SQL (Django cannot declare partitioning); the model's state is
declared beside it so that the two match. Events already in the outbox are copied in."""

import django.core.serializers.json
import django.utils.timezone
from django.db import migrations, models

CREATE = [
    """
    CREATE TABLE outbox_eventlog (
        event_id bigint NOT NULL,
        committed_at timestamp with time zone NOT NULL,
        logged_at timestamp with time zone NOT NULL DEFAULT now(),
        type varchar(100) NOT NULL,
        version smallint NOT NULL CHECK (version >= 0),
        aggregate_type varchar(100) NOT NULL,
        aggregate_id varchar(64) NOT NULL,
        owner_id bigint NULL,
        payload jsonb NOT NULL,
        PRIMARY KEY (event_id, committed_at)
    ) PARTITION BY RANGE (committed_at)
    """,
    "CREATE INDEX eventlog_owner_time ON outbox_eventlog (owner_id, committed_at DESC, event_id DESC)",
    "CREATE INDEX eventlog_committed ON outbox_eventlog (committed_at)",
    "CREATE TABLE outbox_eventlog_default PARTITION OF outbox_eventlog DEFAULT",
]
DROP = ["DROP TABLE IF EXISTS outbox_eventlog CASCADE"]


def partitions_and_backfill(apps, schema_editor):
    # The running code's functions: they only issue DDL and INSERT ... SELECT on these tables.
    from outbox.eventlog import partitions, writer

    partitions.ensure()
    writer.backfill()  # older events land in the default partition...
    partitions.ensure()  # ...and move to partitions of their own months


def drop_detached(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'outbox\\_eventlog\\_y%%'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("outbox", "0003_delivery_infrastructure_faults")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(sql=CREATE, reverse_sql=DROP)],
            state_operations=[
                migrations.CreateModel(
                    name="EventLog",
                    fields=[
                        (
                            "event_id",
                            models.BigIntegerField(
                                help_text="The outbox event's id.", primary_key=True, serialize=False
                            ),
                        ),
                        (
                            "committed_at",
                            models.DateTimeField(help_text="When the event was written (its created_at)."),
                        ),
                        (
                            "logged_at",
                            models.DateTimeField(
                                default=django.utils.timezone.now, help_text="When this row was written."
                            ),
                        ),
                        ("type", models.CharField(max_length=100)),
                        ("version", models.PositiveSmallIntegerField()),
                        ("aggregate_type", models.CharField(max_length=100)),
                        ("aggregate_id", models.CharField(max_length=64)),
                        (
                            "owner_id",
                            models.BigIntegerField(blank=True, help_text="The payload's user_id.", null=True),
                        ),
                        ("payload", models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder)),
                    ],
                    options={
                        "verbose_name": "event log entry",
                        "verbose_name_plural": "event log",
                        "db_table": "outbox_eventlog",
                        "ordering": ["-committed_at", "-event_id"],
                        "indexes": [
                            models.Index(fields=["owner_id", "-committed_at", "-event_id"], name="eventlog_owner_time"),
                            models.Index(fields=["committed_at"], name="eventlog_committed"),
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(partitions_and_backfill, drop_detached),
    ]

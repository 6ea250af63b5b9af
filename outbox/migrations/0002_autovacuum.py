"""Vacuum the outbox tables early: they are queues, rows come and go all day, and with
PostgreSQL's defaults (vacuum once 20 % of a table is dead) retention would let them
swell by a fifth before their space is reused. At 2 % they stay near their live size
(`make bench BENCH_ARGS="--only retention"`)."""

from django.db import migrations

TABLES = ("outbox_outboxevent", "outbox_delivery", "outbox_deliveryattempt")
TUNED = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05"
DEFAULTS = "autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor"


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[f"ALTER TABLE {t} SET ({TUNED})" for t in TABLES],
            reverse_sql=[f"ALTER TABLE {t} RESET ({DEFAULTS})" for t in TABLES],
        )
    ]

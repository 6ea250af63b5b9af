"""An index of each subscriber's waiting deliveries in id order: a worker's oldest ones are read
off it, instead of walking the primary key past every finished delivery ahead of them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0006_fair_share"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status", "dispatched")),
                fields=["subscriber", "id"],
                name="outbox_delivery_oldest",
            ),
        ),
    ]

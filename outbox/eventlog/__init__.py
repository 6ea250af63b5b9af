"""The event log: every outbox event, kept append-only in monthly partitions, for the activity
feed, audits and exports. Part of the outbox app (its model, migration and admin register through
outbox/models.py and outbox/admin.py), so it too imports nothing else of ours at import time."""

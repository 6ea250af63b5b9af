"""Database settings for a PostgreSQL reached through a transaction pooler (PgBouncer).

In transaction pooling mode (`pool_mode = transaction`), PgBouncer gives each transaction
of a client whichever server connection is free. Nothing a client leaves on the server
between transactions is there for its next one: a session `SET`, an advisory lock, a
`WITH HOLD` cursor, a named prepared statement. What SelfOS does needs none of them once
these settings are applied (`DATABASE_POOLER=pgbouncer`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

POOLERS = ("", "pgbouncer")


def for_pooler(pooler: str, database: dict[str, Any]) -> dict[str, Any]:
    """`database` as DATABASE_POOLER says: "" (PostgreSQL directly) leaves it, "pgbouncer" fits it."""
    if pooler not in POOLERS:
        raise ImproperlyConfigured(f"DATABASE_POOLER must be one of {POOLERS}, not {pooler!r}")
    return behind_transaction_pooler(database) if pooler else database


def behind_transaction_pooler(database: dict[str, Any]) -> dict[str, Any]:
    """A copy of Django's `database` settings, fit to go through a transaction pooler."""
    pooled = {**database, "OPTIONS": {**database.get("OPTIONS", {})}}
    # Django's QuerySet.iterator() outside a transaction declares a WITH HOLD cursor and
    # fetches from it in later statements, which may land on another server connection
    # ("cursor does not exist"): fetch in chunks on the client instead. A named cursor
    # inside transaction.atomic() (the event log export) is fine: the transaction keeps
    # its server connection to the end.
    pooled["DISABLE_SERVER_SIDE_CURSORS"] = True
    # psycopg 3 prepares a statement on the server after it ran 5 times on a connection;
    # the next client on that server connection would find it, or miss it ("prepared
    # statement ... does not exist"). PgBouncer tracks them only from 1.21 (Debian 12
    # ships 1.18): never prepare.
    pooled["OPTIONS"]["prepare_threshold"] = None
    return pooled

"""The log's monthly partitions: made ahead by a beat task, and detached for archiving.

Rows whose month has no partition go to the DEFAULT partition, so an insert never fails for
want of one and no event is lost. Making a month's partition moves that month's rows out of
the default first (PostgreSQL refuses to attach a range the default partition holds rows of),
so the default drains itself at the next run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.utils import timezone

from .. import conf
from .models import EventLog

logger = logging.getLogger(__name__)

PARENT = EventLog._meta.db_table
DEFAULT = f"{PARENT}_default"
NAME = re.compile(rf"^{PARENT}_y(\d{{4}})m(\d{{2}})$")


@dataclass(frozen=True)
class Partition:
    name: str
    month: date  # the first day of the month it holds
    attached: bool

    @property
    def start(self) -> datetime:
        return datetime(self.month.year, self.month.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return next_month(self.start)


def next_month(moment: datetime) -> datetime:
    return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1, day=1)


def month_of(moment: date | datetime) -> date:
    return date(moment.year, moment.month, 1)


def name_for(month: date) -> str:
    return f"{PARENT}_y{month.year:04d}m{month.month:02d}"


def partitions() -> list[Partition]:
    """Every monthly table, attached or detached (a detached one waits for archiving), by month."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) "
            "FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE %s "
            "AND c.relnamespace = current_schema()::regnamespace",
            [f"{PARENT}_y%"],
        )
        found = []
        for name, attached in cursor.fetchall():
            if match := NAME.match(name):
                found.append(Partition(name, date(int(match[1]), int(match[2]), 1), attached))
    return sorted(found, key=lambda p: p.month)


def months_in_default() -> list[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', committed_at AT TIME ZONE 'UTC')::date FROM {DEFAULT}"  # noqa: S608
        )
        return [row[0] for row in cursor.fetchall()]


def ensure(ahead: int | None = None, today: date | None = None) -> list[str]:
    """Make the partitions of this month and the next `ahead` months, and of every month the
    default partition holds rows of; returns the names made. Safe to run any number of times."""
    ahead = conf.get("EVENTLOG_PARTITIONS_AHEAD") if ahead is None else ahead
    month = month_of(today or timezone.now().astimezone(UTC))
    wanted = {month}
    moment = datetime(month.year, month.month, 1, tzinfo=UTC)
    for _ in range(ahead):
        moment = next_month(moment)
        wanted.add(month_of(moment))
    wanted.update(months_in_default())
    existing = {p.month for p in partitions()}
    made = []
    for m in sorted(wanted - existing):
        made.append(create(m))
    if made:
        logger.info("event log: partitions made: %s", ", ".join(made))
    return made


def create(month: date) -> str:
    """Make one month's partition, taking that month's rows from the default partition."""
    part = Partition(name_for(month), month, attached=False)
    with transaction.atomic(), connection.cursor() as cursor:
        # Inserts that would land in the default partition wait for this transaction (it is
        # short: the default is normally empty); those for other months go on.
        cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"CREATE TABLE {part.name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE committed_at >= %s AND committed_at < %s "  # noqa: S608
            f"RETURNING *) INSERT INTO {part.name} SELECT * FROM moved",
            [part.start, part.end],
        )
        # The parent's indexes (its key included) are made on the new table as it is attached.
        # DDL takes no bind parameters: the bounds are literals we make ourselves.
        cursor.execute(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {part.name} "
            f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
        )
    return part.name


def detach(part: Partition) -> None:
    """Take a month out of the log (its rows leave every query at once); archiving drops it later."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {part.name}")


def drop(part: Partition) -> None:
    if part.attached:
        raise ValueError(f"{part.name} is still attached: detach it first")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {part.name}")

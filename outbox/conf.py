"""The outbox's settings: the project's OUTBOX dict over these defaults, the only ones.

The host project sets only what it changes (SelfOS reads `OUTBOX_<KEY>` environment
variables into OUTBOX in its settings); every default, and what it means, is here.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "QUEUE": "outbox",  # the relay, sweeper and retention tasks run here
    "RELAY_INTERVAL": 1.0,  # seconds between beat-driven relay runs
    "RELAY_BATCH_SIZE": 500,  # events claimed per relay transaction
    "RELAY_TIME_BUDGET": 5.0,  # seconds one relay run keeps draining a backlog
    # A kicked run starting sooner than this after the last one ended waits out the rest, so
    # under load each run carries the events of this long (at low load, runs are further apart
    # than this and none waits).
    "RELAY_MIN_SPACING": 0.02,
    "MESSAGE_BATCH_SIZE": 100,  # deliveries of one subscriber carried by one Celery message
    "LEASE_SECONDS": 120,  # a dispatched delivery unfinished after this is re-published...
    "LEASE_MAX_SECONDS": 3600,  # ...unless its queue still holds messages: then after this
    "TAKE_WAITING": True,  # a worker also takes its subscriber's other waiting deliveries
    # While a subscriber's message waits in the broker, the relay sends it no other: the waiting
    # one takes what accumulated (outbox/coalesce.py). The mark of a queued message lasts at most
    # QUEUED_MARK_SECONDS, so a lost message holds the relay's next ones back no longer.
    "COALESCE_MESSAGES": True,
    "QUEUED_MARK_SECONDS": 5.0,
    # Fair share (outbox/fairness.py): the relay's claim and a worker's batch take waiting work
    # in turns across owners, so one owner's burst does not hold the others behind it. An
    # event's owner is this key of its payload (events without it share one turn).
    "FAIR_SHARE": True,
    "OWNER_KEY": "user_id",
    # The express lane (outbox/express.py): while a subscriber has more than EXPRESS_BACKLOG
    # deliveries waiting (a burst), the relay also sends the deliveries of owners with at most
    # EXPRESS_OWNER_LIMIT waiting to its express queue (`<queue>.express`), which a worker of its
    # own takes (the Procfile's `express`), so they do not wait behind the burst's batches.
    "EXPRESS_LANE": True,
    "EXPRESS_BACKLOG": 25,
    "EXPRESS_OWNER_LIMIT": 10,
    "GROUP_COMMIT_SECONDS": 0.05,  # a worker commits a message's deliveries at least this often
    # A message whose outcome could not be recorded (the database was away) comes back
    # after 0.5 s, doubling up to this: its deliveries run as soon as the database answers.
    "INFRASTRUCTURE_RETRY_MAX_SECONDS": 5.0,
    "SWEEP_INTERVAL": 5.0,  # seconds between sweeper runs
    "SWEEP_BATCH_SIZE": 1000,
    "RETENTION_DAYS": 7.0,  # fully succeeded events older than this are deleted
    "RETENTION_BATCH_SIZE": 1000,
    "RETENTION_INTERVAL": 3600.0,  # seconds between retention runs
    "KICK": True,  # run the relay right after a commit that wrote events
    "KICK_PENDING_SECONDS": 5,  # a kicked run not started by then no longer holds kicks back
    "CACHE": "default",  # the Django cache (shared by all processes) that coalesces kicks
    # The event log (outbox/eventlog/): monthly partitions made this many months ahead, by a
    # beat task run this often (seconds); rows of a month without one go to the DEFAULT partition.
    "EVENTLOG_PARTITIONS_AHEAD": 3,
    "EVENTLOG_PARTITIONS_INTERVAL": 6 * 3600.0,
    "EVENTLOG_EXPORT_CHUNK": 20_000,  # rows fetched from the server-side cursor per round trip
    # The keyed hash (HMAC-SHA256) that pseudonymizes owner ids in datasets. Empty: not set, and
    # `events dataset` refuses to run unless DEBUG is on (it then uses a fixed development key).
    "EVENTLOG_PSEUDONYM_KEY": "",
}


def get(key: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "OUTBOX", {})}[key]

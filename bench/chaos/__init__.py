"""`make chaos`: completions through the API while processes are killed and servers crash.

    python -m bench.chaos [--seconds 60] [--rate 5] [--seed N] [--every S] [--faults a,b,...]
                          [--without-postgres-faults] [--report-json PATH]

Runs the whole service (gunicorn, relay, subscriber workers, beat) against the
database it is given and a Redis of its own (so restarting it loses its queues for
real). Pushes go through the real firebase-admin client to a loopback FCM that
records every message, so a push sent twice is seen. While completions arrive, a
fault is injected every few seconds: a worker, its pool processes or the relay is
`kill -9`'d, Redis is killed and a fresh empty one started, PostgreSQL is
crash-restarted (`pg_ctl restart -m immediate`, whichever server is in use, run as
the user owning its data directory), or one client backend is SIGKILLed (the
postmaster then restarts every backend, as a crashing extension makes it do). A
process that exits on its own is restarted, as a process manager would. The
restarted server logs to bench/results/tmp/chaos/postgresql.log. Then
the outbox settles and the effects are counted: per completed task one story
segment, one memory row, one notification, one progress snapshot per event, one
push shown per notification and device (a push re-sent under the same collapse id,
which the device shows once, is counted but allowed). Exit status 0 only if
nothing is lost, duplicated or dead.

The modules: `__main__` (the command line and the run), `service` (the processes and
Redis), `postgres` (finding and crash-restarting the server), `faults` (the kinds and
their injection), `traffic` (the completions sent through the API), `effects` (what
the run left, and the verdict), `report` (the table and the JSON).
"""

# The workers are started with `python -c "from bench.chaos import celery_main; ..."`:
# keep that import cheap (service.py needs nothing beyond the standard library at import).
from .service import celery_main

__all__ = ["celery_main"]

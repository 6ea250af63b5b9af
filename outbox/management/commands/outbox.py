"""`manage.py outbox status|retry|replay|audit|relay|sweep|purge`: the outbox from the command line."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from outbox import audit, registry, relay, retention, services, sweeper


class Command(BaseCommand):
    help = "Inspect and operate the transactional outbox."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="pending events, oldest age, deliveries per subscriber")
        retry = sub.add_parser("retry", help="re-dispatch dead deliveries")
        retry.add_argument("--subscriber", help="only this subscriber's dead deliveries")
        retry.add_argument("--id", type=int, nargs="*", default=[], help="only these delivery ids")
        replay = sub.add_parser("replay", help="re-run one subscriber over past events")
        replay.add_argument("subscriber")
        replay.add_argument("--since", help="ISO datetime, inclusive")
        replay.add_argument("--until", help="ISO datetime, exclusive")
        audit_ = sub.add_parser("audit", help="check the invariants; exits non-zero on a violation")
        audit_.add_argument(
            "--allow-dead",
            action="store_true",
            help="pass with dead deliveries (still listed): they wait for an operator",
        )
        sub.add_parser("relay", help="fan out pending events now")
        sub.add_parser("sweep", help="re-publish expired deliveries and due retries now")
        purge = sub.add_parser("purge", help="delete finished events older than the retention window")
        purge.add_argument("--days", type=float, help="override OUTBOX RETENTION_DAYS")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_status(self, **options: Any) -> None:
        s = services.status()
        age = f"{s.oldest_pending_age_seconds:.1f}s" if s.oldest_pending_age_seconds is not None else "-"
        self.stdout.write(f"pending events: {s.pending_events}  oldest pending: {age}")
        self.stdout.write(
            f"{'subscriber':<16}{'queue':<16}{'dispatched':>11}{'waiting':>9}{'succeeded':>11}{'dead':>7}"
        )
        for row in s.subscribers:
            self.stdout.write(
                f"{row.name:<16}{row.queue:<16}{row.dispatched:>11}{row.pending:>9}{row.succeeded:>11}{row.dead:>7}"
            )

    def do_retry(self, subscriber: str | None, id: list[int], **options: Any) -> None:
        dead = services.dead_deliveries(subscriber=subscriber, ids=id)
        self.stdout.write(f"re-dispatched {services.retry_deliveries(dead)} dead deliveries")

    def do_replay(self, subscriber: str, since: str | None, until: str | None, **options: Any) -> None:
        try:
            registry.get(subscriber)  # an unknown name is an error, with the known ones listed
        except KeyError:
            names = ", ".join(s.name for s in registry.all_subscribers())
            raise CommandError(f"no subscriber {subscriber!r}; known: {names}") from None
        bounds = {}
        for name, value in (("since", since), ("until", until)):
            if value:
                parsed = parse_datetime(value)
                if parsed is None:
                    raise CommandError(f"--{name} is not an ISO datetime: {value!r}")
                bounds[name] = parsed
        total = services.replay_events(subscriber, **bounds).count()
        with tqdm(total=total, unit="event", desc=f"replay {subscriber}", file=self.stderr) as bar:
            count = services.replay(subscriber, progress=bar.update, **bounds)
        self.stdout.write(f"replayed {count} deliveries of {subscriber}")

    def do_audit(self, **options: Any) -> None:
        report = audit.run()
        for name in report.checked:
            found = report.violations.get(name, [])
            self.stdout.write(f"{'FAIL' if found else 'ok  '}  {name}")
            for line in found:
                self.stdout.write(f"        {line}")
        self.stdout.write("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())))
        self.stdout.write(f"dead deliveries: {len(report.dead)}")
        for line in report.dead:
            self.stdout.write(f"        {line}")
        if not report.promises_kept:
            raise CommandError(f"audit found violations in {len(report.violations)} checks")
        if report.dead and not options["allow_dead"]:
            raise CommandError(
                f"audit found {len(report.dead)} dead deliveries: retry them (`outbox retry`) "
                "once their cause is fixed, or pass --allow-dead"
            )
        self.stdout.write("audit passed")

    def do_relay(self, **options: Any) -> None:
        self.stdout.write(f"relayed {relay.relay()} events")

    def do_sweep(self, **options: Any) -> None:
        self.stdout.write(f"sweep: {sweeper.sweep()}")

    def do_purge(self, days: float | None, **options: Any) -> None:
        total = 0
        with tqdm(unit="event", desc="purge finished events", file=self.stderr) as bar:
            while deleted := retention.purge_batch(days):
                total += deleted
                bar.update(deleted)
        self.stdout.write(f"deleted {total} finished events")

"""`manage.py events export|archive|dataset|partitions|backfill`: the event log from the command line."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from outbox.eventlog import archive, export, partitions, writer


def moment(value: str) -> datetime:
    """An ISO date or datetime; a date means its midnight, UTC; a naive time is taken as UTC."""
    parsed = parse_datetime(value) or (
        datetime.combine(d, datetime.min.time()) if (d := parse_date(value)) else None
    )
    if parsed is None:
        raise ValueError(f"not an ISO date or datetime: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Export, archive and inspect the event log; build datasets from it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        exp = sub.add_parser("export", help="stream events to Parquet or JSON Lines")
        exp.add_argument("--since", required=True, type=moment, help="ISO date or datetime, inclusive")
        exp.add_argument("--until", required=True, type=moment, help="ISO date or datetime, exclusive")
        exp.add_argument("--type", help="only events of this type")
        exp.add_argument("--user", type=int, help="only events of this owner (user id)")
        exp.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
        exp.add_argument("--out", required=True, type=Path)
        arc = sub.add_parser("archive", help="detach, export to Parquet and drop months before --before")
        arc.add_argument("--before", required=True, help="YYYY-MM: months before this one are archived")
        arc.add_argument("--out", required=True, type=Path, help="directory for the Parquet files")
        ds = sub.add_parser("dataset", help="build a training dataset from the log")
        ds.add_argument("name", choices=("completions",))
        ds.add_argument("--out", required=True, type=Path)
        ds.add_argument("--with-text", action="store_true", help="include titles, descriptions, captions")
        ds.add_argument("--since", type=moment, help="completions at or after (ISO)")
        ds.add_argument("--until", type=moment, help="completions before (ISO)")
        parts = sub.add_parser("partitions", help="list the monthly partitions; --ensure makes them ahead")
        parts.add_argument("--ensure", action="store_true")
        sub.add_parser("backfill", help="log outbox events that are missing from the log")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def bar(self, total: int, desc: str, unit: str = "event") -> tqdm:
        return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=self.stderr)

    def do_export(self, since: datetime, until: datetime, out: Path, **options: Any) -> None:
        if since >= until:
            raise CommandError("--until must be later than --since")
        selection = export.Selection(since=since, until=until, type=options["type"], owner_id=options["user"])
        write = export.write_parquet if options["format"] == "parquet" else export.write_jsonl
        with self.bar(selection.count(), f"export {options['format']}") as bar:
            written = write(selection, out, bar.update)
        self.stdout.write(f"exported {written} events to {out}")

    def do_archive(self, before: str, out: Path, **options: Any) -> None:
        try:
            year, month = (int(x) for x in before.split("-"))
            limit = date(year, month, 1)
        except ValueError:
            raise CommandError(f"--before is not YYYY-MM: {before!r}") from None
        current = partitions.month_of(datetime.now(UTC))
        if limit > current:
            raise CommandError("--before may not be later than the current month: its rows are still coming")
        for part in archive.due(limit):
            with self.bar(0, f"archive {part.name}") as bar:

                def progress(total: int, done: int, bar: tqdm = bar) -> None:
                    bar.total = total
                    bar.update(done)

                path = archive.archive(part, out, progress)
            self.stdout.write(f"archived {part.name} to {path}")

    def do_dataset(self, name: str, out: Path, with_text: bool, **options: Any) -> None:
        from outbox.eventlog import dataset

        try:
            key = dataset.pseudonym_key()
        except dataset.NoKey as exc:
            raise CommandError(str(exc)) from None
        events = export.Selection(since=options["since"], until=options["until"], type=dataset.COMPLETED)
        with self.bar(events.count(), f"dataset {name}", unit="completion") as bar:
            written = dataset.write_completions(events, out, key, with_text=with_text, progress=bar.update)
        self.stdout.write(f"wrote {written} completions to {out}")

    def do_partitions(self, ensure: bool, **options: Any) -> None:
        if ensure:
            for name in partitions.ensure():
                self.stdout.write(f"made {name}")
        for part in partitions.partitions():
            state = "attached" if part.attached else "DETACHED (archive pending)"
            self.stdout.write(f"{part.name}  {part.month:%Y-%m}  {state}")
        leftover = partitions.months_in_default()
        self.stdout.write(f"default partition: rows of {len(leftover)} months without a partition")

    def do_backfill(self, **options: Any) -> None:
        self.stdout.write(f"logged {writer.backfill()} events that were missing from the log")

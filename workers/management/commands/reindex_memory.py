"""`manage.py reindex_memory [--user ID] [--batch-size N]`: the same as `memory reindex`,
under the name the memory issue gave it."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Embed every completed task again and upsert it (resumable, no duplicates): `memory reindex`."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument("--user", type=int, help="only this user's tasks (id)")

    def handle(self, *args: Any, batch_size: int, user: int | None, **options: Any) -> None:
        argv = ["reindex", "--batch-size", str(batch_size)]
        if user is not None:
            argv += ["--user", str(user)]
        call_command("memory", *argv, stdout=self.stdout, stderr=self.stderr)

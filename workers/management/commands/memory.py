"""`manage.py memory prepare|reindex|search|forget-user`: make the embedding model ready, rebuild
semantic memory from the tasks, try a search, or drop a deleted user's store tenant again."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tasks_app.models import Task
from workers.memory import embedding, forget, recall
from workers.memory.items import items_for
from workers.memory.stores import StoreUnavailable, get_store


class Command(BaseCommand):
    help = "Rebuild the vector store from the completed tasks (after changing MEMORY_STORE), or search it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser(
            "prepare", help="load the embedding model once (with onnx: export and check it if not cached)"
        )
        reindex = sub.add_parser("reindex", help="embed every completed task again and upsert it")
        reindex.add_argument("--batch-size", type=int, default=256)
        reindex.add_argument("--user", type=int, help="only this user's tasks (id)")
        search = sub.add_parser("search", help="search one user's memories")
        search.add_argument("user", type=int)
        search.add_argument("query")
        search.add_argument("-k", type=int, default=5)
        forget_user = sub.add_parser(
            "forget-user", help="drop a deleted user's tenant from the vector store (Weaviate); idempotent"
        )
        forget_user.add_argument("user", type=int, help="the deleted user's id")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action.replace('-', '_')}")(**options)

    def do_prepare(self, **options: Any) -> None:
        # Run before the workers start, so they find the ONNX file made and checked.
        vector = embedding.embed(["ready"])[0]
        runtime = settings.MEMORY_EMBEDDING_RUNTIME
        self.stdout.write(f"embedding model ready ({runtime}, {len(vector)} dimensions)")

    def do_reindex(self, batch_size: int, user: int | None, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        tasks = Task.objects.filter(status=Task.Status.COMPLETED).order_by("pk")
        if user is not None:
            tasks = tasks.filter(owner_id=user)
        store = get_store()
        done = 0
        with tqdm(
            total=tasks.count(), unit="task", desc=f"reindex into {store.name}", file=self.stderr
        ) as bar:
            # Keyset pagination: stable and cheap however many tasks there are.
            last = None
            while True:
                page = tasks.filter(pk__gt=last) if last else tasks
                batch = list(page.select_related("project").prefetch_related("media")[:batch_size])
                if not batch:
                    break
                store.upsert(items_for(batch))
                done += len(batch)
                last = batch[-1].pk
                bar.update(len(batch))
        self.stdout.write(f"reindexed {done} completed tasks into {store.name}")

    def do_search(self, user: int, query: str, k: int, **options: Any) -> None:
        for hit in recall.search(user, query, k):
            self.stdout.write(f"{hit.score:.3f}  {hit.title}  ({hit.task_id})")

    def do_forget_user(self, user: int, **options: Any) -> None:
        # The retry for an account deletion whose after-commit tenant drop failed (Weaviate away).
        if get_user_model().objects.filter(pk=user).exists():
            raise CommandError(f"user {user} still exists: delete the account (DELETE /api/me/) instead")
        try:
            dropped = forget.drop_tenant(user)
        except StoreUnavailable as exc:
            raise CommandError(f"the vector store is unavailable, try again later: {exc}") from exc
        if dropped:
            self.stdout.write(f"dropped the {settings.MEMORY_STORE} tenant of user {user}")
        else:
            self.stdout.write(f"{settings.MEMORY_STORE} keeps no tenant per user: nothing to drop")

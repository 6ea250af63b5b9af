"""Holding a row against its deletion while a subscriber writes about it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import Model


def hold_against_delete(model: type[Model], pks: Iterable[object]) -> None:
    """`FOR KEY SHARE` on these rows until the delivery's transaction ends.

    A delete of any of them waits, so its own `*.deleted` delivery then finds what this one
    wrote and removes it; the user's ordinary edits (an UPDATE of non-key columns) do not wait,
    however long the delivery takes (a push, an embedding, an LLM). In primary-key order, so
    two deliveries never wait on each other in a cycle. Rows already gone are simply absent.
    """
    pk = model._meta.pk
    table, column, db_type = model._meta.db_table, pk.column, pk.db_type(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM {table} WHERE {column} = ANY(%s::{db_type}[]) "  # noqa: S608
            f"ORDER BY {column} FOR KEY SHARE",
            [[str(p) for p in pks if p is not None]],
        )

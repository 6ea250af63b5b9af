"""Run the same work in several threads at once, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def concurrently(step: Callable[[], bool], threads: int = 2, rounds: int = 200) -> list[BaseException]:
    """Start `threads` threads together, each calling `step()` until it returns True (done) or
    `rounds` times; returns what they raised (an empty list when all went well)."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                if step():
                    return
        except BaseException as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    return errors

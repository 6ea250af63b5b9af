"""What the suites share: the Row they report, a clean slate between runs, paced load, and
temporary overrides of the outbox's settings that are undone however a suite ends."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.test.utils import override_settings
from redis import Redis

from outbox.models import Delivery, OutboxEvent

from ..db import truncate

T = TypeVar("T")
MIB = 2**20

# Figures one suite measures and a later one in the same run builds on (the latency suite
# runs at half the sustained rate): by name.
MEASURED: dict[str, float] = {}


@dataclass(frozen=True)
class Row:
    """One figure of the results table (and one entry of results/*.json's "results")."""

    bench: str
    figure: str
    # An int stays an int (counts print without decimals in the table).
    value: float
    unit: str = ""
    baseline: float | None = None  # measured in the same run as `value`
    target: str | None = None
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """`value` against its baseline: what every target is stated as."""
        return self.value / self.baseline if self.baseline else None

    def to_json(self) -> dict[str, Any]:
        """The row as the JSON has always had it: a baseline comes with its ratio and a target
        with its verdict, even when that is null (a beat-only latency row has a target of "-"
        and met null); a figure with neither has neither key."""
        fields = asdict(self)
        row = {key: fields[key] for key in ("bench", "figure", "value", "unit", "baseline")}
        row |= {"ratio": self.ratio, "target": self.target, "met": self.met}
        for pair in (("baseline", "ratio"), ("target", "met")):
            if all(row[key] is None for key in pair):
                for key in pair:
                    del row[key]
        return row


def reset() -> None:
    """An empty outbox, empty domain tables and an empty broker: no suite sees another's rows."""
    truncate()
    flush_broker()


def flush_broker() -> None:
    """An empty broker: messages nobody consumed are gone."""
    Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def bench_user() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


@contextmanager
def outbox_settings(**changes: Any) -> Iterator[None]:
    """settings.OUTBOX with `changes` on top, for this process, inside the block only: a suite
    that fails leaves the next one the settings it found (outbox.conf reads OUTBOX per call)."""
    with override_settings(OUTBOX={**getattr(settings, "OUTBOX", {}), **changes}):
        yield


def paced(items: Iterable[T], rate: float) -> Iterator[T]:
    """Yield `items` at `rate` per second on a fixed schedule: an item that took long is
    caught up on by the next ones, so the rate holds on average, as steady traffic would."""
    started = time.monotonic()
    for i, item in enumerate(items):
        yield item
        pause = started + (i + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def wait_settled(timeout: float) -> bool:
    """Wait until no event is pending and every delivery succeeded or is dead; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists()
            and not Delivery.objects.exclude(
                status__in=[Delivery.Status.SUCCEEDED, Delivery.Status.DEAD]
            ).exists()
        ):
            return True
        time.sleep(0.1)
    return False

"""A project's figures as of any moment, from rows sorted once (workers/progress/figures.Timeline),
agree with counting the rows done by then: the straightforward reading it replaces."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import mean

from workers.progress.figures import ProjectFigures, Timeline

START = datetime(2026, 1, 1, tzinfo=UTC)


def counted(rows: list[tuple[datetime | None, int | None]], as_of: datetime | None) -> ProjectFigures:
    estimates = [e for _, e in rows if e]
    default = mean(estimates) if estimates else 1
    done = [(c, e) for c, e in rows if c is not None and (as_of is None or c <= as_of)]
    total = sum(e or default for _, e in rows)
    weight = sum(e or default for _, e in done)
    percent = Decimal(100 * weight / total).quantize(Decimal("0.01")) if total else Decimal(0)
    return ProjectFigures(percent=percent, tasks_done=len(done), tasks_total=len(rows))


def test_figures_as_of_any_moment_agree_with_counting_the_rows() -> None:
    rng = random.Random(7)
    for size in (0, 1, 2, 5, 40, 300):
        rows = [
            (
                START + timedelta(minutes=rng.randrange(0, 600)) if rng.random() < 0.7 else None,
                rng.choice([None, 1, 2, 3, 5, 8]),
            )
            for _ in range(size)
        ]
        timeline = Timeline(rows)
        moments = [None, START - timedelta(days=1), START + timedelta(days=1)]
        moments += [c for c, _ in rows if c is not None][:20]  # exactly at a completion counts it
        moments += [START + timedelta(minutes=rng.randrange(0, 600), seconds=30) for _ in range(20)]
        for moment in moments:
            assert timeline.figures(moment) == counted(rows, moment), (size, moment)


def test_an_empty_project_is_at_zero() -> None:
    assert Timeline([]).figures() == ProjectFigures(percent=Decimal(0), tasks_done=0, tasks_total=0)

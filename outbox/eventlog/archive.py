"""Archiving old months: detach the partition, export it to Parquet, drop it.

Each step is safe to repeat: a partition detached by a run that failed later (an export that
could not be written) is found again by the next run and finished, and nothing is dropped
before its file is complete and holds every row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from . import export, partitions

logger = logging.getLogger(__name__)


def due(before: date) -> list[partitions.Partition]:
    """The monthly tables of months before `before`, attached or already detached."""
    return [p for p in partitions.partitions() if p.month < before]


def archive(
    part: partitions.Partition, out_dir: Path, progress: Callable[[int, int], Any] | None = None
) -> Path:
    """Detach (if still attached), export and drop one month; returns the Parquet file.

    `progress(total, done_now)` is called with the row count first, then per chunk written.
    """
    if part.attached:
        partitions.detach(part)
        part = partitions.Partition(part.name, part.month, attached=False)
    selection = export.Selection(table=part.name)
    total = selection.count()
    if progress:
        progress(total, 0)
    out = Path(out_dir) / f"{part.name}.parquet"
    written = export.write_parquet(selection, out, (lambda n: progress(total, n)) if progress else None)
    if written != total:  # rows cannot arrive in a detached table; this guards the export itself
        raise RuntimeError(f"{part.name}: wrote {written} rows of {total}; the table is kept")
    partitions.drop(part)
    logger.info("event log: archived %s (%d rows) to %s", part.name, total, out)
    return out

"""The benchmark suites, one module each, by the name `--only` takes, in the table's order.

Each module's `run(quick)` returns its `common.Row`s; its docstring says what it measures
and against which baseline. A suite's module is imported only when it runs, so one that
cannot import (a moved dependency, a missing extra) fails alone, and listing the suites
(for `--help` and `--only`) needs no Django.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .common import Row

MODULES = {
    "write": "write_path",
    "tracing": "tracing",
    "relay": "relay",
    # Sustained first: latency runs at half the rate it measures.
    "sustained": "sustained",
    "latency": "latency",
    "fairness": "fairness",
    "layout": "layout",
    "backlog": "backlog",
    "retention": "retention",
    "embedding": "embedding",
    "search": "search",
    "eventlog": "eventlog",
}


def run(name: str, quick: bool) -> list[Row]:
    """Run one suite (Django set up) and return its rows."""
    rows: list[Row] = import_module(f"{__name__}.{MODULES[name]}").run(quick)
    return rows

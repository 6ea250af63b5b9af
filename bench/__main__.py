"""`make bench`: run the benchmarks, print one table, write bench/results/latest.json.

    python -m bench [--quick] [--only write,tracing,relay,latency,sustained,backlog,...]

Runs against the database `selfos_bench` (made by with_services.py) and Redis db 14,
so a running service's data and queues are never touched. Each figure that has a
baseline is measured in the same run as its baseline and reported as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import suites

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_model() or platform.processor() or platform.machine(),
    }


def cpu_model() -> str:
    """The CPU's name (Linux): machines with the same core count differ twofold in speed, so a
    table says which one it was measured on."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


SUITES = tuple(suites.MODULES)  # in the table's order


def setup_django() -> None:
    """The bench's own Redis db (14), then Django: only when suites run."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.local")
    os.environ["REDIS_URL"] = urlunsplit(urlsplit(os.environ["REDIS_URL"])._replace(path="/14"))
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_DEBUG", "false")  # as the workers run (bench/processes.py)
    import django

    django.setup()


def setup_bench_database() -> None:
    """Django set up, and the bench database migrated (a fresh one works)."""
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes: a smoke run, not figures to quote"
    )
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SUITES))
    parser.add_argument(
        "--markdown", action="store_true", help="print latest.json as a Markdown table, run nothing"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads((RESULTS / "latest.json").read_text())))
        return 0
    chosen = [s for s in args.only.split(",") if s] or list(SUITES)
    if unknown := set(chosen) - set(SUITES):
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")

    setup_bench_database()
    out = RESULTS / ("quick.json" if args.quick else "latest.json")
    rows: list[dict[str, Any]] = []
    if args.only and out.exists():
        # A partial run replaces its own suites' rows and keeps the others'.
        rows = [r for r in json.loads(out.read_text())["results"] if r.get("suite") not in chosen]
    for name in chosen:
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        rows += [{"suite": name, **row.to_json()} for row in suites.run(name, quick=args.quick)]
        print(f"bench: {name} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: SUITES.index(r["suite"]) if r.get("suite") in SUITES else 99)
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": args.quick, "results": rows}, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(RESULTS.parent.parent)}")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("benchmark", "figure", "value", "baseline", "ratio", "target", "met")
    table = [
        (
            r["bench"],
            r["figure"],
            _fmt(r["value"], r.get("unit", "")),
            _fmt(r.get("baseline"), r.get("unit", "")) if r.get("baseline") is not None else "-",
            f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-",
            r.get("target", "-"),
            {True: "yes", False: "NO", None: "-"}[r.get("met")],
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in table:
        print(line.format(*row))


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| benchmark | figure | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        unit = r.get("unit", "")
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
        value, baseline = _fmt(r["value"], unit), _fmt(r.get("baseline"), unit)
        target = r.get("target", "-")
        lines.append(f"| {r['bench']} | {r['figure']} | {value} | {baseline} | {ratio} | {target} | {met} |")
    m = data["machine"]
    lines.append(
        f"\nMachine: {m['cpus']} cores ({m.get('processor', '?')}), {m['memory_gib']} GiB, {m['platform']},"
        f" Python {m['python']}."
    )
    return "\n".join(lines)


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    return f"{value} {unit}".strip()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

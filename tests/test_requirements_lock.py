"""The hashed locks (requirements/*.txt, written by `make lock`) match what the .in files ask for.

pip installs them with --require-hashes, so a pin without a hash, or an .in pin that the lock
does not hold at the same version, would fail only on the next fresh machine: caught here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements"
LOCKS = ("local", "production", "bench")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted(name: str) -> dict[str, str]:
    """The pins an .in file asks for, with those of the .in files it includes (-r)."""
    pins: dict[str, str] = {}
    for line in (REQUIREMENTS / f"{name}.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= wanted(line[3:].removesuffix(".in"))
        elif match := PIN.match(line):
            pins[canonical(match[1])] = match[2]
    return pins


def locked(name: str) -> dict[str, list[str]]:
    """Each locked package's `name==version` line with its hash lines."""
    entries: dict[str, list[str]] = {}
    current = ""
    for line in (REQUIREMENTS / f"{name}.txt").read_text().splitlines():
        if match := PIN.match(line):
            current = canonical(match[1])
            entries[current] = [line]
        elif line.strip().startswith("--hash=sha256:") and current:
            entries[current].append(line)
    return entries


@pytest.mark.parametrize("name", LOCKS)
def test_every_locked_package_has_a_version_and_a_hash(name: str) -> None:
    entries = locked(name)
    assert len(entries) > 50, "the lock holds the whole tree, not just the direct dependencies"
    unhashed = [lines[0] for lines in entries.values() if len(lines) < 2]
    assert not unhashed, f"requirements/{name}.txt: pins without a hash: {unhashed}"


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_asked_for_is_locked_at_that_version(name: str) -> None:
    entries = locked(name)
    for package, version in wanted(name).items():
        assert package in entries, f"{package} is in requirements/{name}.in but not in its lock: make lock"
        locked_version = PIN.match(entries[package][0])[2]  # type: ignore[index]
        # A local build label (torch's +cpu) is the same release.
        assert locked_version.split("+")[0] == version, (
            f"{package}: {name}.in asks for {version}, the lock has {locked_version}: make lock"
        )


def test_production_and_bench_use_the_development_locks_versions() -> None:
    development = {p: lines[0] for p, lines in locked("local").items()}
    for name in ("production", "bench"):
        for package, lines in locked(name).items():
            if package in development:
                assert lines[0] == development[package], f"{name}: {lines[0]}, local: {development[package]}"


def test_torch_is_locked_to_its_cpu_build() -> None:
    # PyPI's torch of the same version is a multi-GB CUDA build, with nvidia-* packages.
    for name in LOCKS:
        entries = locked(name)
        assert entries["torch"][0].startswith("torch==2.13.0+cpu"), name
        assert not [p for p in entries if p.startswith("nvidia-")], name

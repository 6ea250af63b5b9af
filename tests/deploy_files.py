"""Reading the deployment files (docker-compose.yml, Procfile) for the tests that check them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

PROXY = "proxy"
STORES = ("db", "redis", "weaviate")
# Passwords and keys: the stack must refuse to start without them, never fall back to a default.
SECRETS = (
    "DJANGO_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "WEAVIATE_API_KEY",
    "FLOWER_BASIC_AUTH",
)


# --- loading ------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a dict, whichever of compose's two spellings it uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return dict(raw)


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def networks_of(service: dict[str, Any]) -> set[str]:
    # A service that names no network is on the project's `default` one, which is not internal.
    raw = service.get("networks") or ["default"]
    return set(raw)


def internal_networks() -> set[str]:
    declared = compose().get("networks") or {}
    return {name for name, spec in declared.items() if (spec or {}).get("internal") is True}


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def assignments(command: str) -> tuple[dict[str, str], str]:
    """A Procfile command's leading `NAME=value` assignments (the process's environment), and the
    command after them."""
    found: dict[str, str] = {}
    words = command.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        name, value = words.pop(0).split("=", 1)
        found[name] = value
    return found, " ".join(words)


def option(args: list[str], name: str) -> str:
    """The value of `--name value` or `--name=value` in an argv."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def requires(value: Any, variable: str) -> bool:
    """Whether a compose value takes `variable` with no default (`${VAR:?message}`)."""
    return isinstance(value, str) and re.search(rf"\$\{{{variable}:?\?", value) is not None


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions

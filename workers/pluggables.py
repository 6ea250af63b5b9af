"""The pluggable parts, chosen by settings as Django chooses EMAIL_BACKEND: a short name or a
dotted path, loaded with `import_string`, and checked when the project starts.

| setting                    | short names            | what the path names                    |
|----------------------------|------------------------|----------------------------------------|
| PUSH_BACKEND               | console, locmem, fcm   | a class with send(messages)            |
| STORY_WRITER               | template, openai       | a class with write(context)            |
| MEMORY_STORE               | pgvector, weaviate     | a VectorStore class                    |
| MEMORY_EMBEDDING_RUNTIME   | onnx, torch            | a function returning an Encoder        |

A class with a `from_settings()` classmethod is built with it (its options come from
settings); any other class or function is called with no arguments. A misspelled name
or a path that does not import fails `manage.py check`, and so `make run` and every
worker's start, instead of turning the first deliveries into dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Pluggable:
    setting: str
    aliases: dict[str, str]

    @property
    def value(self) -> str:
        return str(getattr(settings, self.setting))


PLUGGABLES = {
    p.setting: p
    for p in (
        Pluggable(
            "PUSH_BACKEND",
            {
                "console": "workers.notifications.push.ConsoleBackend",
                "locmem": "workers.notifications.push.LocmemBackend",
                "fcm": "workers.notifications.push.FCMBackend",
            },
        ),
        Pluggable(
            "STORY_WRITER",
            {
                "template": "workers.story.writers.TemplateWriter",
                "openai": "workers.story.writers.OpenAICompatibleWriter",
            },
        ),
        Pluggable(
            "MEMORY_STORE",
            {
                "pgvector": "workers.memory.stores.PgVectorStore",
                "weaviate": "workers.memory.weaviate_store.WeaviateStore",
            },
        ),
        Pluggable(
            "MEMORY_EMBEDDING_RUNTIME",
            {"onnx": "workers.memory.embedding.load_onnx", "torch": "workers.memory.embedding.load_torch"},
        ),
    )
}


class UnknownPluggable(ImportError):
    """A setting names a part that does not exist (caught at start by the system check)."""


def resolve(setting: str, value: str | None = None) -> Any:
    """The class or function the setting (or `value` for it) names."""
    pluggable = PLUGGABLES[setting]
    value = pluggable.value if value is None else value
    path = pluggable.aliases.get(value, value)
    if "." not in path:
        names = ", ".join(pluggable.aliases)
        raise UnknownPluggable(f"unknown {setting} {value!r} (one of {names}, or a dotted path)")
    try:
        return import_string(path)
    except ImportError as exc:
        raise UnknownPluggable(f"{setting} {value!r} cannot be imported: {exc}") from exc


def build(setting: str, value: str | None = None) -> Any:
    """The part itself, built from settings."""
    part = resolve(setting, value)
    factory = getattr(part, "from_settings", None)
    return factory() if callable(factory) else part()


@checks.register(checks.Tags.compatibility)
def check_pluggables(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for setting, pluggable in PLUGGABLES.items():
        try:
            resolve(setting)
        except UnknownPluggable as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint=f"set {setting} to one of {', '.join(pluggable.aliases)}, or a dotted path",
                    id=f"workers.E{list(PLUGGABLES).index(setting) + 1:03d}",
                )
            )
    return errors

"""Story writers: turn what happened into prose. Chosen by STORY_WRITER, as Django picks an e-mail backend.

- `template` (default): offline, deterministic per subject, varied and specific: it
  weaves in the task, its media captions, the project's progress and recalled tasks.
- `openai`: any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp
  server, OpenAI). Timeouts, connection errors, 429 and 5xx are transient (the outbox
  retries with backoff); any other 4xx is permanent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import httpx
from django.conf import settings

from outbox.api import PermanentError, TransientError


@dataclass(frozen=True)
class StoryContext:
    kind: str  # task, project or goal
    subject_id: str
    title: str
    description: str = ""
    project_title: str | None = None
    goal_title: str | None = None
    percent: Decimal | None = None
    media: list[dict[str, str]] = field(default_factory=list)
    recalled: list[dict[str, Any]] = field(default_factory=list)
    tasks_done: int | None = None


class Writer(Protocol):
    name: str

    def write(self, context: StoryContext) -> str: ...


class TemplateWriter:
    name = "template"

    OPENINGS = (
        "Today, {title} moved from the list to the done pile.",
        "{title}: finished.",
        "Another thread tied off: {title}.",
        "It took what it took, and {title} is now behind you.",
        "Mark the day: {title} is complete.",
    )
    MEDIA_LEADS = (
        "You kept a record of it: {items}.",
        "What stays from it: {items}.",
        "The moment, in pieces: {items}.",
    )
    PROGRESS = (
        "That puts {project} at {percent}%.",
        "{project} now stands at {percent}%.",
        "With it, {project} reaches {percent}%.",
    )
    RECALL = (
        "It echoes earlier work: {items}.",
        "Not the first of its kind; you have done {items} before.",
        "It builds on {items}.",
    )
    CLOSINGS = ("On to the next one.", "Keep the streak warm.", "One step, then another.", "")

    def write(self, context: StoryContext) -> str:
        # Seeded by the subject: the same event always reads the same way, and
        # different tasks read differently.
        rng = random.Random(context.subject_id)
        if context.kind != "task":
            return self._chapter(context, rng)
        parts = [rng.choice(self.OPENINGS).format(title=f"“{context.title}”")]
        if context.description:
            parts.append(context.description.strip().rstrip(".") + ".")
        if context.media:
            items = "; ".join(_describe_media(m) for m in context.media)
            parts.append(rng.choice(self.MEDIA_LEADS).format(items=items))
        if context.project_title and context.percent is not None:
            parts.append(
                rng.choice(self.PROGRESS).format(project=context.project_title, percent=_pct(context.percent))
            )
        if context.recalled:
            items = ", ".join(f"“{r['title']}”" for r in context.recalled)
            parts.append(rng.choice(self.RECALL).format(items=items))
        parts.append(rng.choice(self.CLOSINGS))
        return " ".join(p for p in parts if p)

    def _chapter(self, context: StoryContext, rng: random.Random) -> str:
        what = "project" if context.kind == "project" else "goal"
        done = f" after {context.tasks_done} tasks" if context.tasks_done else ""
        lines = [
            f"A chapter closes: the {what} “{context.title}” is complete{done}.",
            rng.choice(("Look back at how it started.", "Every small step counted.", "Take a breath here.")),
        ]
        if context.goal_title:
            lines.append(f"It carries you toward “{context.goal_title}”.")
        return " ".join(lines)


def _describe_media(media: dict[str, str]) -> str:
    caption = media.get("caption") or media.get("url", "")
    return f"{media['kind']} “{caption}”" if caption else media["kind"]


def _pct(value: Decimal) -> str:
    return f"{value:.0f}" if value == value.to_integral() else f"{value:.1f}"


class OpenAICompatibleWriter:
    """Chat completions over HTTP; the template writer's facts go in as the prompt."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> OpenAICompatibleWriter:
        return cls(
            base_url=settings.STORY_LLM_BASE_URL,
            model=settings.STORY_LLM_MODEL,
            api_key=settings.STORY_LLM_API_KEY,
            timeout=settings.STORY_LLM_TIMEOUT,
        )

    def write(self, context: StoryContext) -> str:
        body = {
            "model": self.model,
            "temperature": 0.8,
            "messages": [
                {
                    "role": "system",
                    "content": "You write short, warm, specific story segments (2-4 sentences) about a "
                    "person's progress. Use only the facts given. No lists, no headings.",
                },
                {"role": "user", "content": _facts(context)},
            ],
        }
        try:
            response = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"story writer unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"story writer answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(
                f"story writer refused the request: {response.status_code} {response.text[:200]}"
            )
        try:
            text = response.json()["choices"][0]["message"]["content"].strip()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise TransientError(f"story writer sent an unreadable answer: {response.text[:200]}") from exc
        if not text:
            raise TransientError("story writer sent an empty segment")
        return text


def _facts(context: StoryContext) -> str:
    lines = [f"Completed {context.kind}: {context.title}"]
    if context.description:
        lines.append(f"Description: {context.description}")
    if context.project_title:
        pct = f" ({_pct(context.percent)}% complete)" if context.percent is not None else ""
        lines.append(f"Project: {context.project_title}{pct}")
    if context.goal_title:
        lines.append(f"Goal: {context.goal_title}")
    lines += [f"Media ({m['kind']}): {m.get('caption') or m.get('url')}" for m in context.media]
    lines += [f"Related earlier task: {r['title']}" for r in context.recalled]
    return "\n".join(lines)


@cache
def get_writer() -> Writer:
    """The writer STORY_WRITER names (see workers.pluggables); cached per process."""
    from ..pluggables import build

    return build("STORY_WRITER")

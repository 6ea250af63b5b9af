"""`make demo`: drive a running SelfOS (`make run`) through its API and show what the subscribers did.

Creates a fresh user with a goal, a project and three tasks with media, registers a
phone for push, completes the tasks, waits for the four subscribers, then prints the
progress, the story, the notifications with their pushes, and a semantic search.
"""

from __future__ import annotations

import os
import secrets
import sys
import textwrap
import time
from typing import Any

import httpx

BASE = os.environ.get("SELFOS_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
TIMEOUT = float(os.environ.get("DEMO_TIMEOUT", "90"))

TASKS = [
    (
        "Long run along the river",
        "18 km at an easy pace",
        [("image", "https://media.example/river.jpg", "fog lifting off the river at dawn")],
    ),
    ("Interval session on the track", "6 x 800 m", [("note", "", "last two repeats felt strong")]),
    (
        "Race-day kit check",
        "shoes, gels, bib",
        [("image", "https://media.example/kit.jpg", "everything laid out on the floor")],
    ),
]


def main() -> int:
    client = httpx.Client(base_url=BASE, timeout=15)
    try:
        client.get("/healthz").raise_for_status()
    except httpx.HTTPError as exc:
        print(
            f"demo: SelfOS does not answer at {BASE} ({exc}). Start it with `make run` first.",
            file=sys.stderr,
        )
        return 1

    username = f"demo-{secrets.token_hex(3)}"
    token = post(
        client, "/api/auth/register/", {"username": username, "password": secrets.token_urlsafe(16)}
    )["token"]
    client.headers["Authorization"] = f"Token {token}"
    print(f"user {username} at {BASE}")
    post(client, "/api/devices/", {"token": f"demo-phone-{secrets.token_hex(8)}", "platform": "android"})
    goal = post(client, "/api/goals/", {"title": "Run my first marathon", "target_date": "2027-04-25"})
    project = post(client, "/api/projects/", {"title": "Marathon training block", "goal": goal["id"]})
    tasks = []
    for title, description, media in TASKS:
        task = post(
            client, "/api/tasks/", {"title": title, "description": description, "project": project["id"]}
        )
        for kind, url, caption in media:
            post(client, f"/api/tasks/{task['id']}/media/", {"kind": kind, "url": url, "caption": caption})
        tasks.append(task)

    for task in tasks:
        client.put(f"/api/tasks/{task['id']}/complete/").raise_for_status()
        print(f"completed “{task['title']}”")

    # 3 task segments + the project's and the goal's chapter closes; same for notifications.
    expected = len(tasks) + 2
    deadline = time.monotonic() + TIMEOUT
    while True:
        story = client.get("/api/story/").json()
        notes = client.get("/api/notifications/").json()
        if story["count"] >= expected and notes["count"] >= expected:
            break
        if time.monotonic() > deadline:
            print(
                f"demo: after {TIMEOUT:.0f}s only {story['count']} story segments and {notes['count']} "
                f"notifications of {expected}: are the workers running (`make run`)?",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.5)

    progress = client.get(f"/api/projects/{project['id']}/progress/").json()
    heading("Progress")
    p = progress
    print(f"{project['title']}: {p['percent']}% ({p['tasks_done']}/{p['tasks_total']} tasks)")
    print(f"goal: {p['goal_percent']}%")
    print(f"streak {p['streak_days']} day(s), pace {p['pace_per_week']} tasks/week")
    print("history: " + " -> ".join(f"{h['percent']}%" for h in reversed(p["history"])))
    goal_status = client.get(f"/api/goals/{goal['id']}/").json()["status"]
    project_status = client.get(f"/api/projects/{project['id']}/").json()["status"]
    print(f"project status: {project_status}, goal status: {goal_status}")

    heading("Story")
    for segment in reversed(story["results"]):
        memory = segment["metadata"].get("memory", "-")
        print(f"[{segment['kind']}] {segment['title']}  (writer: {segment['writer']}, memory: {memory})")
        print(textwrap.indent(textwrap.fill(segment["text"], 88), "    "))

    heading("Notifications and pushes")
    for note in reversed(notes["results"]):
        pushes = ", ".join(f"{p['platform']}: {p['status']}" for p in note["pushes"]) or "no push"
        print(f"{note['body']}  [{pushes}]")

    heading("Semantic memory: “running by the water”")
    for hit in client.get("/api/memory/search/", params={"q": "running by the water", "k": 3}).json()[
        "results"
    ]:
        print(f"{hit['score']:.3f}  {hit['title']}")
    return 0


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body)
    if response.status_code >= 400:
        raise SystemExit(f"demo: POST {path} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def heading(text: str) -> None:
    print(f"\n== {text}")


if __name__ == "__main__":
    sys.exit(main())

"""A load generator in its own process: N threads with keep-alive clients, one request per task id."""

from __future__ import annotations

import threading
import time
from multiprocessing import get_context
from typing import Any


def _run(base_url: str, path: str, token: str, ids: list[str], concurrency: int, out: Any) -> None:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    chunks = [ids[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[str]) -> None:
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30
        ) as client:
            for task_id in chunk:
                started = time.perf_counter()
                response = client.put(path.format(id=task_id))
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"wall": time.perf_counter() - started, "latencies": latencies, "errors": errors[0]})


def generate(base_url: str, path: str, token: str, ids: list[str], concurrency: int) -> dict[str, Any]:
    """Run the load from a separate process (so it does not share this one's GIL) and return its figures."""
    ctx = get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_run, args=(base_url, path, token, ids, concurrency, out))
    proc.start()
    result = out.get(timeout=600)
    proc.join(30)
    return result

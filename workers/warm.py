"""An express worker's processes load the embedding model when they start, not on their first task.

The express lane (outbox/express.py) is idle until a burst, and its first deliveries are the
ones it exists to hurry: a light owner's memory and story, which embed text. Loaded lazily,
the model (a second or more on a busy machine) would be paid by exactly those. Workers on the
subscribers' own queues keep loading it on first use.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from celery.signals import worker_process_init

logger = logging.getLogger(__name__)


def consumes_express_queues() -> bool:
    from outbox import registry

    express = {sub.express_queue for sub in registry.all_subscribers()}
    return bool(express & set(current_app.amqp.queues.consume_from or ()))


@worker_process_init.connect  # each process of the express worker's prefork pool (the Procfile's)
def _load_the_model_in_express_workers(**kwargs: Any) -> None:
    if not consumes_express_queues():
        return
    from .memory.embedding import encoder

    try:
        encoder()
    except Exception:  # the first task that needs it loads it, and reports why it cannot
        logger.warning("express worker: could not load the embedding model at start", exc_info=True)

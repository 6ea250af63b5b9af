"""Four no-op subscribers shaped like the real ones: three on one worker's queues, one
(batched, like memory) on another's."""

from collections.abc import Sequence

from outbox.api import Event, subscriber

EVENT = "bench.tick"


@subscriber("tick_progress", events=[EVENT], queue="progress")
def tick_progress(event: Event) -> None:
    pass


@subscriber("tick_story", events=[EVENT], queue="story")
def tick_story(event: Event) -> None:
    pass


@subscriber("tick_notifications", events=[EVENT], queue="notifications")
def tick_notifications(event: Event) -> None:
    pass


def tick_memory_batch(events: Sequence[Event]) -> None:
    pass


@subscriber("tick_memory", events=[EVENT], queue="memory", batch_handler=tick_memory_batch)
def tick_memory(event: Event) -> None:
    pass

"""The two kinds of failure a subscriber can report: try again later, or give up now."""


class TransientError(Exception):
    """A failure that may pass (a timeout, a 5xx, a quota): the delivery is retried with backoff."""


class PermanentError(Exception):
    """A failure no retry can fix (bad payload, 4xx): the delivery goes dead at once."""

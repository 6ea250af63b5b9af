"""django-celery-outbox (PyPI), set up to relay what our relay relays: the relay suite's
third contender. Bench-only: its package comes from requirements/bench.txt and its app is
installed only by this package's settings, so the service never loads it."""

"""Benchmarks: `make bench` runs them against real PostgreSQL, Redis and Celery workers."""

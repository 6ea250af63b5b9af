"""A transactional outbox for Django with Celery fan-out.

Public API: `publish()` to write an event in the caller's transaction,
`subscriber` / `RetryPolicy` to declare a subscriber, `Event` (what a handler
receives), `TransientError` / `PermanentError` (how a handler reports failure).
"""

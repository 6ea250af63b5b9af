"""The story: the subscriber (handler.py, one event; batch.py, many), the drafts written before a
segment is recorded (drafts.py) and the writers that compose its text (writers.py)."""

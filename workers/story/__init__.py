"""The story: the subscriber (handler.py) and the writers that compose its text (writers.py)."""

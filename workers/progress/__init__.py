"""Progress: the subscriber (handler.py) and the figures it, the story and the API read (figures.py)."""

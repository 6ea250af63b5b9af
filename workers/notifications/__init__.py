"""Notifications: the subscriber (handler.py), quiet hours, and the push backends (push.py)."""

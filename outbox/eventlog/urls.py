"""The event log's route (mounted under /api/ by the project)."""

from django.urls import path

from .api import EventFeedView

urlpatterns = [path("events/", EventFeedView.as_view(), name="event-feed")]

"""Routes of the subscribers' API: each concern's views live beside its subscriber."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .memory.api import MemorySearchView
from .notifications.api import DeviceViewSet, NotificationViewSet, PreferencesView
from .progress.api import ProjectProgressView
from .story.api import StoryListView

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("notifications", NotificationViewSet, basename="notification")
router.register("devices", DeviceViewSet, basename="device")

urlpatterns = [
    path("projects/<uuid:pk>/progress/", ProjectProgressView.as_view(), name="project-progress"),
    path("story/", StoryListView.as_view(), name="story"),
    path("preferences/", PreferencesView.as_view(), name="preferences"),
    path("memory/search/", MemorySearchView.as_view(), name="memory-search"),
    *router.urls,
]

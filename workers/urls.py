"""Routes of the subscribers' API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.trailing_slash = "/?"
router.register("notifications", views.NotificationViewSet, basename="notification")
router.register("devices", views.DeviceViewSet, basename="device")

urlpatterns = [
    path("projects/<uuid:pk>/progress/", views.ProjectProgressView.as_view(), name="project-progress"),
    path("story/", views.StoryListView.as_view(), name="story"),
    path("preferences/", views.PreferencesView.as_view(), name="preferences"),
    path("memory/search/", views.MemorySearchView.as_view(), name="memory-search"),
    *router.urls,
]

"""Routes of the account endpoints (mounted under /api/ beside the domain's /api/auth/ routes)."""

from django.urls import path

from . import views

urlpatterns = [
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("me/export/", views.ExportView.as_view(), name="me-export"),
]

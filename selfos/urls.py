"""Top-level URLs: the API, its schema and docs, health probes, the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("tasks_app.urls")),
    path("api/", include("workers.urls")),
    path("api/", include("selfos.accounts.urls")),
    path("api/", include("outbox.eventlog.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]

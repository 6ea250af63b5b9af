"""The project's URLs plus the seed's naive completion path, for comparison only (never in the product)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from selfos.urls import urlpatterns as product

from .naive import NaiveTaskViewSet

router = SimpleRouter()
router.register("tasks", NaiveTaskViewSet, basename="naive-task")

urlpatterns = [path("bench/naive/", include(router.urls)), *product]

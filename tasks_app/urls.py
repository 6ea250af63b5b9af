"""Routes of the domain API. Trailing slashes are optional, as in the seed's `/tasks/{id}/complete`."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
# The constructor only takes a yes/no; a regex makes the slash optional on every route.
router.trailing_slash = "/?"
router.register("goals", views.GoalViewSet, basename="goal")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("tasks", views.TaskViewSet, basename="task")

urlpatterns = [
    path("auth/register/", views.RegisterView.as_view(), name="register"),
    path("auth/token/", views.TokenView.as_view(), name="token"),
    *router.urls,
]

"""The local settings plus the backlog suite's no-op subscribers."""

from selfos.settings.local import *  # noqa: F403
from selfos.settings.local import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.backlog"]

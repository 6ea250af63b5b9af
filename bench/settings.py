"""Settings for the write-path benchmark's server: the local settings plus the naive baseline endpoint."""

from selfos.settings.local import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
DEBUG = False

#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    # Fail closed: a process nobody configured gets production settings, whose secrets have no
    # default, so it stops with ImproperlyConfigured instead of running with DEBUG on, any host
    # allowed and a published SECRET_KEY. `make run`, `make test` and CI choose local or test.
    chosen = "DJANGO_SETTINGS_MODULE" in os.environ
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selfos.settings.production")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        if not chosen:
            # A developer who ran manage.py by hand sees why production wants a secret.
            exc.add_note(
                "DJANGO_SETTINGS_MODULE is not set, so production settings were used. On a development "
                "machine set DJANGO_SETTINGS_MODULE=selfos.settings.local (make run and make test do)."
            )
        raise


if __name__ == "__main__":
    main()

"""The migrations are the models': nothing left for the next `makemigrations` to write."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_models_and_their_migrations_agree() -> None:
    """A model change without its migration (or a migration spelled differently from its model,
    as the express index's condition once was) would make the next `makemigrations` write one."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)

"""Create the demo account `make run` prints, once; later runs leave it alone."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create the demo superuser (username demo) with a random password, printed once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"selfos: demo user {username!r} exists (its password was printed when it was made; "
                f"`manage.py changepassword {username}` sets a new one)"
            )
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, password=password, email="")
        token = Token.objects.create(user=user)
        self.stdout.write(
            "selfos: created the demo user; these credentials are printed only this once:\n"
            f"  username: {username}\n  password: {password}\n  API token: {token.key}"
        )

"""The accounts app: it has no models of its own, only the views and services over everyone else's."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

"""``manage.py roles_sync``: create the role groups and (re)apply their permissions (idempotent)."""

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from apps.accounts.roles import roles_sync


class Command(BaseCommand):
    help = "Create the role groups and set their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        roles_sync(group_model=Group, permission_model=Permission)
        self.stdout.write("roles synced")

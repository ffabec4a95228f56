"""``manage.py db_roles``: create the runtime database role and apply its grants (see apps.accounts.dbroles).

Run as the owner role (``DJANGO_DATABASE_ROLE=owner`` in production) after every ``migrate``; idempotent.
The runtime role's password, if it should log in with one, comes from the environment variable named by
``--password-env`` (default ``DATABASE_APP_PASSWORD``), never from the command line.
"""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.dbroles import db_roles_apply
from apps.core.errors import Conflict


class Command(BaseCommand):
    help = "Create the runtime DB role (<db>_app): DML everywhere, INSERT/SELECT only on the audit trail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default=None, help="role name (default DATABASE_APP_ROLE or <db>_app)")
        parser.add_argument(
            "--password-env", default="DATABASE_APP_PASSWORD", help="env var with its password"
        )
        parser.add_argument("--database", default="default", help="database alias to connect as the owner")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get(options["password_env"]) or None
        try:
            result = db_roles_apply(role=options["role"], password=password, using=options["database"])
        except Conflict as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"role {result.role} {'created' if result.created else 'updated'} on {result.database} "
            f"(owner {result.owner}; audit trail INSERT/SELECT only"
            f"{'; login password set' if result.password_set else ''})"
        )

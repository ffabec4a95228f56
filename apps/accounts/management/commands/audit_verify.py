"""``manage.py audit_verify``: walk the audit hash chain; exit 1 and name the first broken link if any."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain."

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify()
        if not result.ok:
            raise CommandError(
                f"audit chain broken at record #{result.broken_seq}: {result.reason} "
                f"({result.checked} records verified before it)"
            )
        self.stdout.write(f"audit chain ok: {result.checked} records")

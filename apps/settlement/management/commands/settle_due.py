"""``manage.py settle_due [--as-of YYYY-MM-DD]``: settle everything due (idempotent)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from apps.settlement.services import settlement_run, trade_date_of


class Command(BaseCommand):
    help = "Settle every trade whose settlement date is on or before --as-of (default: today in New York)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", type=date.fromisoformat, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        as_of: date = options["as_of"] or trade_date_of(timezone.now())
        count = settlement_run(as_of=as_of)
        self.stdout.write(f"settled {count} trade(s) due on or before {as_of.isoformat()}")

"""``manage.py rebuild_read_models orders [--verify]``: rebuild the orders read model from the event history.

The live ``orders.projection`` consumer must be stopped first (the command refuses while its group has members).
``--verify`` changes nothing: it prints every difference between the live and the rebuilt state and exits 1 if any.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import Conflict
from apps.orders.rebuild import orders_rebuild


class Command(BaseCommand):
    help = "Rebuild read models from the event history (orders); --verify only compares."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", choices=["orders"])
        parser.add_argument("--verify", action="store_true", help="compare only; exit 1 on any difference")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a Kafka message")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = orders_rebuild(verify=options["verify"], timeout=options["timeout"])
        except Conflict as exc:
            raise CommandError(str(exc)) from exc
        for line in result.differences:
            self.stdout.write(line)
        if options["verify"]:
            if result.differences:
                raise CommandError(
                    f"{len(result.differences)} difference(s) after replaying {result.events} events"
                )
            self.stdout.write(f"orders: rebuilt state equals live state ({result.events} events)")
        else:
            self.stdout.write(
                f"orders: rebuilt from {result.events} events ({len(result.differences)} corrected)"
            )

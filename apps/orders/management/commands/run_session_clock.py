"""Publish SessionOpen/SessionClose to every engine partition at the configured calendar's open and close.

``manage.py run_session_clock`` ticks every second (``--interval``) against ``market_clock()`` and
``market_calendar()``; ``--once`` runs a single tick. Safe to run twice: commands are idempotent per session date.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.core import kafka
from apps.core.markettime_config import market_calendar
from apps.orders.engine_runner_session import SessionClock


class Command(BaseCommand):
    help = "Record session open/close commands for every orders.commands partition (via the outbox)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
        parser.add_argument("--once", action="store_true", help="one tick, then exit")
        parser.add_argument("--topic", default="orders.commands", help="logical command topic")

    def handle(self, *args: Any, **options: Any) -> None:
        topic = options["topic"]
        clock = SessionClock(
            calendar=market_calendar(),
            partitions=kafka.declared_topic(topic).partitions,
            topic=topic,
            interval=options["interval"],
        )
        recorded = clock.run(once=options["once"])
        self.stdout.write(f"session clock stopped after recording {recorded} commands")

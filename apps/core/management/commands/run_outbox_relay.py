"""Run the outbox relay until SIGTERM: ``manage.py run_outbox_relay``."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core.relay import Relay
from apps.core.runtime import heap_freeze


class Command(BaseCommand):
    help = "Publish committed outbox events to Kafka (acks=all, idempotent), one active relay at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-batches", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        conf = settings.OUTBOX_RELAY
        relay = Relay(
            batch_size=conf["BATCH_SIZE"],
            poll_interval=conf["POLL_INTERVAL_S"],
            listen=conf["LISTEN"],
            listen_poll_interval=conf["LISTEN_POLL_INTERVAL_S"],
        )
        heap_freeze()
        published = relay.run(max_batches=options["max_batches"])
        self.stdout.write(f"relay stopped after publishing {published} events")

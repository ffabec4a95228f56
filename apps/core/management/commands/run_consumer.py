"""Run any registered Kafka consumer: ``manage.py run_consumer <name>`` (``--list`` shows them)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.core.consumers import ConsumerRunner, consumer_get, consumers_all
from apps.core.runtime import heap_freeze


class Command(BaseCommand):
    help = "Run one registered Kafka consumer (inline handler or Kafka->Celery bridge) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?")
        parser.add_argument("--list", action="store_true", help="list registered consumers")
        parser.add_argument("--max-messages", type=int, default=None)
        parser.add_argument("--idle-timeout", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"] or not options["name"]:
            for name, spec in sorted(consumers_all().items()):
                self.stdout.write(f"{name}\t{spec.mode}\t{','.join(spec.topics)}\tdlq={spec.dlq}")
            return
        spec = consumer_get(options["name"])
        runner = ConsumerRunner(spec)
        heap_freeze()
        count = runner.run(max_messages=options["max_messages"], idle_timeout=options["idle_timeout"])
        self.stdout.write(f"consumer {spec.name} stopped after {count} messages")

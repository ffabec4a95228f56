"""Create the declared Kafka topics idempotently: ``manage.py kafka_topics`` (reads config/kafka/topics.toml)."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.core.kafka import topics_ensure


class Command(BaseCommand):
    help = "Create every topic declared in config/kafka/topics.toml that does not exist yet."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, state in sorted(topics_ensure().items()):
            self.stdout.write(f"{state:8} {name}")

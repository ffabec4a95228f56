"""Run the matching engine for a set of ``orders.commands`` partitions until SIGTERM.

``manage.py run_engine`` owns every partition; ``manage.py run_engine --partitions 0,1,2,3`` and
``manage.py run_engine --partitions 4,5,6,7`` split them across two processes. Each partition must be owned by
exactly one running process: a second owner fences the first (its transactions fail and it exits).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core import kafka
from apps.core.runtime import heap_freeze
from apps.orders.engine_impl import IMPLEMENTATIONS
from apps.orders.engine_runner import EngineRunner, EngineTopics


def _partitions(text: str | None, topic: str) -> list[int]:
    if text:
        try:
            return sorted({int(part) for part in text.split(",") if part.strip()})
        except ValueError as exc:
            raise CommandError(f"--partitions takes comma-separated integers, not {text!r}") from exc
    metadata = kafka.admin_client().list_topics(kafka.topic_name(topic), timeout=10)
    found = metadata.topics.get(kafka.topic_name(topic))
    if found is None or found.error is not None or not found.partitions:
        raise CommandError(f"topic {kafka.topic_name(topic)} does not exist (run manage.py kafka_topics)")
    return sorted(found.partitions)


class Command(BaseCommand):
    help = "Consume order commands, match, publish engine events exactly once (Kafka transactions)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partitions", default=None, help="comma-separated partition ids (default: all)")
        parser.add_argument("--snapshot-every", type=int, default=1000, help="commands between snapshots")
        parser.add_argument("--batch-size", type=int, default=5000, help="max commands per transaction")
        parser.add_argument(
            "--batch-ms",
            type=float,
            default=20.0,
            help="max ms a transaction window stays open while input waits",
        )
        parser.add_argument(
            "--implementation",
            choices=IMPLEMENTATIONS,
            default=None,
            help="engine implementation (default: the ENGINE_IMPLEMENTATION setting, native)",
        )
        parser.add_argument("--group", default="engine", help="consumer group and transactional id base")
        parser.add_argument("--idle-timeout", type=float, default=None, help="exit after this many idle s")
        parser.add_argument("--until-caught-up", action="store_true", help="exit at the input's end")
        parser.add_argument(
            "--stall-timeout",
            type=float,
            default=60.0,
            help="exit (status 70) after this many s without input progress while input waits; 0: never",
        )
        defaults = EngineTopics()
        for name in ("commands", "events", "trades", "book", "snapshots", "dead_letters"):
            parser.add_argument(f"--{name.replace('_', '-')}-topic", default=getattr(defaults, name))

    def handle(self, *args: Any, **options: Any) -> None:
        topics = EngineTopics(
            commands=options["commands_topic"],
            events=options["events_topic"],
            trades=options["trades_topic"],
            book=options["book_topic"],
            snapshots=options["snapshots_topic"],
            dead_letters=options["dead_letters_topic"],
        )
        runner = EngineRunner(
            partitions=_partitions(options["partitions"], topics.commands),
            topics=topics,
            group=options["group"],
            snapshot_every=options["snapshot_every"],
            batch_size=options["batch_size"],
            batch_ms=options["batch_ms"],
            stall_timeout=options["stall_timeout"] or None,
            implementation=options["implementation"],
        )
        heap_freeze()
        stats = runner.run(idle_timeout=options["idle_timeout"], until_caught_up=options["until_caught_up"])
        self.stdout.write(
            f"engine stopped: processed={stats.processed} outputs={stats.outputs} "
            f"suppressed={stats.suppressed} snapshots={stats.snapshots}"
        )

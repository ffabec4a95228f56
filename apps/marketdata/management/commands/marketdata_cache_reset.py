"""``manage.py marketdata_cache_reset``: delete the market-data cache that is keyed by the engine's ``book_seq``.

Every cached trade, quote, bar and book is written compare-and-set on the engine's ``book_seq``
(``apps.marketdata.cache``). When the engine's topics are created again (a new incarnation, ADR 0007), ``book_seq``
starts again at 1 and the cache would refuse every update until it passed the old values. This deletes those keys
(``md:*`` but the reference prices ``md:*:ref``, which carry no ``book_seq``); the next events rebuild them.
Without ``--yes`` it only counts what it would delete.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.marketdata import cache


def cache_keys_reset(*, delete: bool) -> int:
    """Delete (or count) the ``book_seq``-keyed market-data keys; returns how many there were."""

    def run(r: Any) -> int:
        found = 0
        batch: list[bytes] = []
        for key in r.scan_iter(match="md:*", count=1000):
            if key.endswith(b":ref"):
                continue
            found += 1
            batch.append(key)
            if delete and len(batch) >= 1000:
                r.unlink(*batch)
                batch.clear()
        if delete and batch:
            r.unlink(*batch)
        return found

    return cache.guarded(run)


class Command(BaseCommand):
    help = "Delete the market-data cache keyed by the engine's book_seq (after the engine's topics are recreated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--yes", action="store_true", help="delete; without it, only count")

    def handle(self, *args: Any, **options: Any) -> None:
        n = cache_keys_reset(delete=options["yes"])
        verb = "deleted" if options["yes"] else "would delete (pass --yes)"
        self.stdout.write(f"{verb} {n} market-data cache keys")

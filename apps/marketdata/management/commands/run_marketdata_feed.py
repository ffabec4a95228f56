"""``manage.py run_marketdata_feed``: publish demo reference prices from the historical replay source.

Every ``--interval`` seconds, for each symbol: ``HistoricalReplaySource.price_at(now)`` → Redis
``md:{symbol}:ref`` and ``Asset.reference_price``. The replay clock starts at ``--clock-start`` (default: today
00:00 UTC), so every publisher process (and the market maker) computes the same price for the same instant.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.core.datafiles import shared_data_dir
from apps.core.runtime import Heartbeat, heartbeat_path
from apps.marketdata import services
from apps.marketdata.cache import RedisUnavailable
from apps.marketdata.feed import HistoricalReplaySource, load_daily_bars


def replay_source(
    *, symbols: list[str] | None = None, clock_start: datetime | None = None, day_minutes: int | None = None
) -> HistoricalReplaySource:
    path = Path(shared_data_dir()) / "ohlcv" / "bokeh_sampledata_stocks.csv.gz"
    bars = load_daily_bars(path, symbols)
    start = clock_start or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = day_minutes or int(getattr(settings, "MARKETDATA_FEED_DAY_MINUTES", 10))
    return HistoricalReplaySource.with_day_duration(bars, start, timedelta(minutes=minutes))


class Command(BaseCommand):
    help = "Publish demo reference prices (historical replay) to Redis and Asset.reference_price."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--symbols", default="", help="comma-separated; default: every symbol in the file"
        )
        parser.add_argument("--interval", type=float, default=None, help="seconds between publications")
        parser.add_argument("--iterations", type=int, default=None, help="stop after N rounds (default: run)")
        parser.add_argument("--clock-start", default=None, help="RFC 3339 replay clock start")

    def handle(self, *args: Any, **options: Any) -> None:
        symbols = [s.strip().upper() for s in options["symbols"].split(",") if s.strip()] or None
        clock_start = datetime.fromisoformat(options["clock_start"]) if options["clock_start"] else None
        source = replay_source(symbols=symbols, clock_start=clock_start)
        interval = options["interval"] or float(getattr(settings, "MARKETDATA_FEED_INTERVAL_S", 2))
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        rounds = 0
        heartbeat = Heartbeat(heartbeat_path("feed"))
        while not stop.is_set():
            heartbeat.beat()
            now = datetime.now(UTC)
            for symbol in source.symbols():
                try:
                    services.reference_price_set(symbol=symbol, price=source.price_at(symbol, now))
                except RedisUnavailable as exc:  # the breaker keeps this cheap; try again next round
                    self.stderr.write(f"reference price for {symbol} not published: {exc}")
            rounds += 1
            if options["iterations"] is not None and rounds >= options["iterations"]:
                break
            stop.wait(interval)
        self.stdout.write(f"published {rounds} round(s) for {len(source.symbols())} symbol(s)")

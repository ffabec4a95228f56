"""Load demo reference data: a few real US instruments with reference prices from the shared OHLCV history."""

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.orders.models import Asset

# Real instruments; reference prices are each one's last close in the bundled history (unadjusted).
DEMO_ASSETS: list[dict[str, Any]] = [
    {"symbol": "AAPL", "name": "Apple Inc. Common Stock", "exchange": "NASDAQ"},
    {"symbol": "MSFT", "name": "Microsoft Corporation Common Stock", "exchange": "NASDAQ"},
    {"symbol": "IBM", "name": "International Business Machines Corporation Common Stock", "exchange": "NYSE"},
    {"symbol": "GOOG", "name": "Alphabet Inc. Class C Capital Stock", "exchange": "NASDAQ"},
    {
        "symbol": "FB",
        "name": "Meta Platforms, Inc. Class A Common Stock (historical ticker FB)",
        "exchange": "NASDAQ",
    },
]


def _last_closes() -> dict[str, Decimal]:
    from apps.core.datafiles import shared_data_dir
    from apps.marketdata.feed import load_daily_bars

    bars = load_daily_bars(shared_data_dir() / "ohlcv" / "bokeh_sampledata_stocks.csv.gz")
    return {symbol: series[-1].close for symbol, series in bars.items() if series}


class Command(BaseCommand):
    help = "Create or update the demo instruments (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        closes = _last_closes()
        with transaction.atomic(durable=True):
            for spec in DEMO_ASSETS:
                asset, created = Asset.objects.update_or_create(
                    symbol=spec["symbol"],
                    defaults={**spec, "reference_price": closes.get(spec["symbol"])},
                )
                self.stdout.write(
                    f"{'created' if created else 'updated'} {asset.symbol} ref={asset.reference_price}"
                )

"""The demo reference price publisher and the ``reference_price`` selector (used by the orders risk collar)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from apps.marketdata.management.commands.run_marketdata_feed import replay_source
from apps.marketdata.selectors import reference_price
from apps.orders.models import Asset

pytestmark = pytest.mark.django_db(transaction=True)


def test_feed_publishes_replay_price_to_redis_and_asset(md_redis: Any) -> None:
    Asset.objects.create(symbol="AAPL", name="Apple", exchange="NASDAQ")
    start = "2024-01-02T00:00:00+00:00"
    before = datetime.now(UTC)
    call_command("run_marketdata_feed", symbols="AAPL,IBM", iterations=1, clock_start=start)
    after = datetime.now(UTC)

    redis_aapl, redis_ibm = md_redis.get("md:AAPL:ref"), md_redis.get("md:IBM:ref")
    assert redis_aapl is not None
    assert redis_ibm is not None
    source = replay_source(symbols=["AAPL"], clock_start=datetime.fromisoformat(start))
    # The published price is a point of the deterministic path: on the cent grid, the price of that instant.
    aapl = Decimal(redis_aapl.decode())
    assert aapl == aapl.quantize(Decimal("0.01"))
    assert aapl in {source.price_at("AAPL", before), source.price_at("AAPL", after)}
    assert reference_price("AAPL") == aapl
    assert Asset.objects.get(symbol="AAPL").reference_price == aapl
    assert not Asset.objects.filter(symbol="IBM").exists()  # no asset row is created by the feed


def test_reference_price_falls_back_to_asset_when_redis_is_down(md_redis: Any) -> None:
    Asset.objects.create(
        symbol="MSFT", name="Microsoft", exchange="NASDAQ", reference_price=Decimal("410.25")
    )
    md_redis.set("md:MSFT:ref", "411.5")
    assert reference_price("MSFT") == Decimal("411.5")
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert reference_price("MSFT") == Decimal("410.25")
        assert reference_price("NOPE") is None

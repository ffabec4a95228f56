"""alpaca-py's StockHistoricalDataClient against a live daphne subprocess (its pydantic models check the shapes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame
from django.conf import settings
from django.contrib.auth import get_user_model

from apps.accounts.services import api_key_create
from apps.marketdata import services

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 5, 15, 30, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server_url(md_redis: Any) -> Iterator[str]:
    db = settings.DATABASES["default"]
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "brokerage.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"daphne did not start: {err!r}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_alpaca_py_reads_bars_latest_trade_quote_and_snapshot(live_server_url: str) -> None:
    for seq, (side, price_e4, qty_e9) in enumerate(
        [("buy", 1_500_000, 300 * 10**9), ("sell", 1_501_000, 200 * 10**9)], start=1
    ):
        services.book_level_apply(
            symbol="AAPL",
            side=side,
            price_e4=price_e4,
            qty_e9=qty_e9,
            order_count=1,
            book_seq=seq,
            timestamp=T0,
        )
    for n, (price_e4, qty_e9, minute) in enumerate(
        [(1_500_000, 10**9, 0), (1_501_000, 5 * 10**9, 1)], start=1
    ):
        services.trade_record(
            symbol="AAPL",
            trade_id=f"{10 + n}:0",
            price_e4=price_e4,
            qty_e9=qty_e9,
            book_seq=10 + n,
            timestamp=T0 + timedelta(minutes=minute, seconds=5),
        )

    owner = get_user_model().objects.create_user(
        username="quant", email="quant@example.com", password="x" * 16
    )
    key, secret = api_key_create(owner=owner, name="research", scopes=["read"])
    client = StockHistoricalDataClient(api_key=key.key_id, secret_key=secret, url_override=live_server_url)

    bars = client.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols=["AAPL"], timeframe=TimeFrame.Minute, start=T0 - timedelta(hours=1)
        )
    )["AAPL"]
    assert [(b.timestamp, b.open, b.close, b.volume, b.trade_count, b.vwap) for b in bars] == [
        (T0, 150.0, 150.0, 1.0, 1.0, 150.0),
        (T0 + timedelta(minutes=1), 150.1, 150.1, 5.0, 1.0, 150.1),
    ]
    # A limit: the client asks for two bars and gets them in order.
    paged = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=T0, limit=2)
    )["AAPL"]
    assert [b.timestamp for b in paged] == [T0, T0 + timedelta(minutes=1)]

    trade = client.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert (trade.price, trade.size, trade.id, trade.timestamp) == (
        150.1,
        5.0,
        12_000_000,
        T0 + timedelta(minutes=1, seconds=5),
    )
    quote = client.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL"]))["AAPL"]
    assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (150.0, 300.0, 150.1, 200.0)

    snapshot = client.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=["AAPL"]))["AAPL"]
    assert snapshot.latest_trade is not None
    assert snapshot.latest_trade.price == 150.1
    assert snapshot.latest_quote is not None
    assert snapshot.latest_quote.ask_price == 150.1
    assert snapshot.minute_bar is not None
    assert snapshot.minute_bar.volume == 5.0
    assert snapshot.daily_bar is not None
    assert (snapshot.daily_bar.volume, snapshot.daily_bar.trade_count) == (6.0, 2.0)
    assert Decimal(str(snapshot.daily_bar.vwap)) == Decimal("150.0833")

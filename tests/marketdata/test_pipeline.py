"""Engine events through Kafka into Redis, PostgreSQL bars and REST, against the real stack."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.marketdata import selectors
from apps.marketdata.models import Bar, Trade
from engine.commands import NewOrder
from engine.engine import Engine
from engine.events import BookLevelChanged, TradeExecuted

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

T0 = datetime(2024, 3, 5, 15, 30, 10, tzinfo=UTC)  # 10:30:10 New York


def order(oid: str, side: str, qty: int, price: str, symbol: str = "AAPL", tif: str = "gtc") -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=f"acct-{oid}",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        type="limit",
        tif=tif,  # type: ignore[arg-type]
        qty_e9=qty * 10**9,
        limit_price_e4=int(Decimal(price) * 10**4),
    )


SCRIPT = [
    order("s1", "sell", 100, "101.00"),
    order("s2", "sell", 50, "100.50"),
    order("s3", "sell", 25, "100.50"),
    order("b1", "buy", 200, "99.00"),
    order("b2", "buy", 30, "99.50"),
    order("x1", "buy", 60, "100.50"),  # takes 50 @ s2 then 10 @ s3
    order("x2", "sell", 40, "99.00", tif="ioc"),  # takes 30 @ b2 then 10 @ b1
]


def run_script(engine: Engine, publish: Callable[..., int], ts: datetime = T0) -> tuple[int, list[Any]]:
    sent, trades = 0, []
    for seq, cmd in enumerate(SCRIPT, start=1):
        evts = engine.apply(seq, cmd)
        trades += [e for e in evts if isinstance(e, TradeExecuted)]
        sent += publish(evts, ts)
    return sent, trades


def book_level_seqs(engine: Engine) -> list[int]:
    replay = Engine()
    return [
        e.book_seq
        for seq, cmd in enumerate(SCRIPT, start=1)
        for e in replay.apply(seq, cmd)
        if isinstance(e, BookLevelChanged)
    ]


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def engine_depth(engine: Engine, symbol: str) -> dict[str, list[dict[str, Any]]]:
    book = engine.book(symbol)
    assert book is not None

    def side(is_buy: bool) -> list[dict[str, Any]]:
        return [
            {"p": format(Decimal(p).scaleb(-4).normalize(), "f"), "s": str(q // 10**9), "n": n}
            for p, q, n in book.depth(is_buy)
        ]

    return {"b": side(True), "a": side(False)}


@override_settings(MARKETDATA_REST_PUBLIC=True)
def test_l2_endpoint_equals_engine_book_after_scripted_orders(
    md_redis: Any, engine_publish: Any, md_consume: Any, api: APIClient
) -> None:
    engine = Engine()
    sent, trades = run_script(engine, engine_publish)
    assert md_consume(sent) == sent

    level_seqs = book_level_seqs(engine)
    body = api.get("/v2/stocks/AAPL/orderbook").json()
    book = body["orderbook"]
    assert {"b": book["b"], "a": book["a"]} == engine_depth(engine, "AAPL")
    assert book["b"] == [{"p": "99", "s": "190", "n": 1}]
    assert book["a"] == [{"p": "100.5", "s": "15", "n": 1}, {"p": "101", "s": "100", "n": 1}]
    assert book["book_seq"] == level_seqs[-1]
    assert api.get("/v2/stocks/AAPL/orderbook?depth=1").json()["orderbook"]["a"] == [
        {"p": "100.5", "s": "15", "n": 1}
    ]

    quote = api.get("/v2/stocks/AAPL/quotes/latest").json()
    assert quote["symbol"] == "AAPL"
    assert (quote["quote"]["bp"], quote["quote"]["bs"], quote["quote"]["ap"], quote["quote"]["as"]) == (
        "99",
        "190",
        "100.5",
        "15",
    )

    # Trades: 4 prints, persisted once each; the latest one is the cached one.
    assert [(t.price_e4, t.qty_e9 // 10**9) for t in trades] == [
        (1005000, 50),
        (1005000, 10),
        (995000, 30),
        (990000, 10),
    ]
    assert Trade.objects.count() == 4
    latest = api.get("/v2/stocks/AAPL/trades/latest").json()["trade"]
    assert (latest["p"], latest["s"], latest["trade_id"], latest["t"]) == (
        "99",
        "10",
        trades[-1].trade_id,
        "2024-03-05T15:30:10Z",
    )

    # Bars: one per timeframe, OHLCV + count + vwap over the four prints.
    notional = Decimal("100.5") * 60 + Decimal("99.5") * 30 + Decimal("99") * 10
    expected_vwap = (notional / 100).quantize(Decimal("0.0001"))
    for tf, start in [
        ("1Min", "2024-03-05T15:30:00Z"),
        ("5Min", "2024-03-05T15:30:00Z"),
        ("15Min", "2024-03-05T15:30:00Z"),
        ("1Hour", "2024-03-05T15:00:00Z"),
        ("1Day", "2024-03-05T05:00:00Z"),
    ]:
        bars = api.get(f"/v2/stocks/AAPL/bars?timeframe={tf}").json()["bars"]
        assert bars == [
            {
                "t": start,
                "o": "100.5",
                "h": "100.5",
                "l": "99",
                "c": "99",
                "v": "100",
                "n": 4,
                "vw": format(expected_vwap.normalize(), "f"),
            }
        ], tf
    assert Bar.objects.count() == 5


@override_settings(MARKETDATA_REST_PUBLIC=True)
def test_replayed_events_change_nothing(
    md_redis: Any, engine_publish: Any, md_consume: Any, api: APIClient
) -> None:
    engine = Engine()
    sent, _ = run_script(engine, engine_publish)
    assert md_consume(sent) == sent
    before = (api.get("/v2/stocks/AAPL/orderbook").json(), api.get("/v2/stocks/AAPL/snapshot").json())
    bars_before = list(Bar.objects.order_by("timeframe").values())

    # The same engine output again (new envelopes, as after a producer restart): no-ops everywhere.
    replay = Engine()
    resent, _ = run_script(replay, engine_publish)
    assert md_consume(resent) == resent

    assert (api.get("/v2/stocks/AAPL/orderbook").json(), api.get("/v2/stocks/AAPL/snapshot").json()) == before
    assert list(Bar.objects.order_by("timeframe").values()) == bars_before
    assert Trade.objects.count() == 4


def test_redis_down_rest_answers_history_from_postgres_or_503(
    md_redis: Any, engine_publish: Any, md_consume: Any, api: APIClient
) -> None:
    sent, trades = run_script(Engine(), engine_publish)
    assert md_consume(sent) == sent
    with override_settings(MARKETDATA_REST_PUBLIC=True, REDIS_URL="redis://127.0.0.1:1/0"):
        trade = api.get("/v2/stocks/AAPL/trades/latest")
        assert trade.status_code == 200
        assert (trade.json()["trade"]["trade_id"], trade.json()["trade"]["p"]) == (trades[-1].trade_id, "99")
        bars = api.get("/v2/stocks/bars?symbols=AAPL&timeframe=1Min")
        assert bars.status_code == 200
        assert bars.json()["bars"]["AAPL"][0]["v"] == "100"
        for path in (
            "/v2/stocks/AAPL/quotes/latest",
            "/v2/stocks/AAPL/orderbook",
            "/v2/stocks/AAPL/snapshot",
            "/v2/stocks/quotes/latest?symbols=AAPL",
        ):
            response = api.get(path)
            assert response.status_code == 503, path
            assert response.json()["code"] == 50310001
            assert response.json()["error"] == "marketdata_cache_unavailable"
        assert selectors.reference_price("AAPL") is None


def test_market_data_requires_authentication_unless_public(md_redis: Any, api: APIClient) -> None:
    assert api.get("/v2/stocks/AAPL/orderbook").status_code == 401
    with override_settings(MARKETDATA_REST_PUBLIC=True):
        assert api.get("/v2/stocks/AAPL/orderbook").json() == {
            "symbol": "AAPL",
            "orderbook": {"b": [], "a": [], "book_seq": 0, "seq": 0},
        }


@override_settings(MARKETDATA_REST_PUBLIC=True)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("timeframe=2Min", "timeframe", id="unsupported-timeframe"),
        pytest.param("timeframe=1Min&limit=0", "limit", id="limit-zero"),
        pytest.param("timeframe=1Min&start=yesterday", "start", id="bad-start"),
        pytest.param("timeframe=1Min&page_token=!!", "page_token", id="foreign-page-token"),
    ],
)
def test_bars_input_errors(md_redis: Any, api: APIClient, query: str, field: str) -> None:
    response = api.get(f"/v2/stocks/AAPL/bars?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == field

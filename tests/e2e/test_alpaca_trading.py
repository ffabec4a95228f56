"""The official alpaca-py SDK against the live stack: every order type, fills, positions and trade_updates.

Two customers (ACTIVE accounts through the accounts services, cash through the ledger's deposit service, the
seller's shares through ``shares_deposit_post``) trade through ``TradingClient`` and listen with
``TradingStream``. Their orders travel the real path: daphne → PostgreSQL + outbox → relay → Kafka → engine →
Kafka → projection (orders, fills, ledger, trade updates) → Channels → the WebSocket.

Each test trades its own symbols, so no test depends on another's book. Waiting for asynchronous effects
polls with a generous bound (``eventually``); no assertion is about time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    AssetStatus,
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)
from alpaca.trading.stream import TradingStream

from tests.e2e.conftest import Customer, LiveStack, asset_create, customer_create, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# symbol -> reference price; the price collar is 10% around it.
ASSETS = {
    "AAPL": Decimal("100"),
    "MSFT": Decimal("200"),
    "GOOG": Decimal("150"),
    "IBM": Decimal("50"),
    "NVDA": Decimal("100"),
    "TSLA": Decimal("100"),
    "AMD": Decimal("100"),
    "HALTX": Decimal("50"),
    "DAYX": Decimal("100"),
}


@dataclass
class StreamLog:
    """A TradingStream in its own thread (it runs its own asyncio loop), recording every trade update."""

    customer: Customer
    url: str
    updates: list[TradeUpdate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.stream = TradingStream(self.customer.key_id, self.customer.secret, url_override=self.url)
        self.stream.subscribe_trade_updates(self._on_update)
        self.thread = threading.Thread(target=self.stream.run, name=f"stream-{self.customer.email}")

    async def _on_update(self, update: TradeUpdate) -> None:
        with self._lock:
            self.updates.append(update)

    def start(self, stack: LiveStack) -> None:
        self.thread.start()
        # Listening (authenticated and subscribed) before any order is placed: updates are not replayed.
        eventually(lambda: self.stream._running, what="the trade_updates stream to listen", stack=stack)

    def stop(self) -> None:
        self.stream.stop()
        self.thread.join(30)

    def of(self, order_id: Any) -> list[TradeUpdate]:
        with self._lock:
            return [u for u in self.updates if str(u.order.id) == str(order_id)]

    def events(self, order_id: Any) -> list[str]:
        return [str(getattr(u.event, "value", u.event)) for u in self.of(order_id)]

    def wait(self, stack: LiveStack, order_id: Any, event: str) -> TradeUpdate:
        def found() -> TradeUpdate | None:
            return next(
                (u for u in self.of(order_id) if str(getattr(u.event, "value", u.event)) == event), None
            )

        return eventually(found, what=f"{event} for {order_id} on {self.customer.email}", stack=stack)


@dataclass
class World:
    stack: LiveStack
    alice: Customer
    bob: Customer
    alice_api: TradingClient
    bob_api: TradingClient
    alice_stream: StreamLog
    bob_stream: StreamLog


@pytest.fixture(scope="module")
def world(live_stack: LiveStack) -> Iterator[World]:
    for symbol, price in ASSETS.items():
        asset_create(symbol, price)
    alice = customer_create(email="alice@e2e.example.com", cash=Decimal("100000"))
    bob = customer_create(
        email="bob@e2e.example.com",
        cash=Decimal("100000"),
        shares={"AAPL": Decimal("100"), "GOOG": Decimal("100"), "TSLA": Decimal("10"), "AMD": Decimal("10")},
    )
    streams = [StreamLog(alice, live_stack.ws_url), StreamLog(bob, live_stack.ws_url)]
    for s in streams:
        s.start(live_stack)
    try:
        yield World(
            stack=live_stack,
            alice=alice,
            bob=bob,
            alice_api=TradingClient(alice.key_id, alice.secret, url_override=live_stack.base_url),
            bob_api=TradingClient(bob.key_id, bob.secret, url_override=live_stack.base_url),
            alice_stream=streams[0],
            bob_stream=streams[1],
        )
    finally:
        for s in streams:
            s.stop()


def _order(o: Any) -> Order:
    assert isinstance(o, Order), o
    return o


def _status_is(api: TradingClient, order_id: Any, status: OrderStatus) -> Order | None:
    order = _order(api.get_order_by_id(order_id))
    return order if order.status == status else None


def _wait_status(w: World, api: TradingClient, order_id: Any, status: OrderStatus) -> Order:
    return eventually(lambda: _status_is(api, order_id, status), what=f"{order_id} {status}", stack=w.stack)


def _buying_power(api: TradingClient) -> Decimal:
    account: Any = api.get_account()
    return Decimal(str(account.buying_power))


# ----------------------------------------------------------------------------------------- reference data


def test_account_assets_clock_and_calendar(world: World) -> None:
    account: Any = world.alice_api.get_account()
    assert str(account.id) == str(world.alice.account_id)
    assert str(account.status.value if hasattr(account.status, "value") else account.status) == "ACTIVE"
    assert Decimal(str(account.cash)) == Decimal("100000")
    assert Decimal(str(account.buying_power)) == Decimal("100000")

    assets: Any = world.alice_api.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE))
    assert sorted(a.symbol for a in assets) == sorted(ASSETS)
    aapl: Any = world.alice_api.get_asset("AAPL")
    assert (aapl.symbol, aapl.tradable, aapl.fractionable, aapl.status) == (
        "AAPL",
        True,
        True,
        AssetStatus.ACTIVE,
    )
    with pytest.raises(APIError) as missing:
        world.alice_api.get_asset("NOPE")
    assert missing.value.status_code == 404

    clock: Any = world.alice_api.get_clock()
    assert clock.is_open is True  # the live processes run the always-open demo calendar

    start = datetime.now(UTC).date()  # the calendar is the always-open demo one: every day trades
    days: Any = world.alice_api.get_calendar(GetCalendarRequest(start=start, end=start + timedelta(days=6)))
    assert [d.date for d in days] == [start + timedelta(days=n) for n in range(7)]


# ----------------------------------------------------------------------------------------- a cross


def test_cross_between_customers_fills_positions_and_close(world: World) -> None:
    w, alice, bob = world, world.alice_api, world.bob_api

    ask = _order(
        bob.submit_order(
            LimitOrderRequest(
                symbol="AAPL",
                qty=10,
                side=OrderSide.SELL,
                time_in_force=TimeInForce.DAY,
                limit_price=100.00,
                client_order_id="bob-ask-1",
            )
        )
    )
    assert (ask.status, ask.qty, ask.limit_price, ask.client_order_id) == (
        OrderStatus.PENDING_NEW,
        "10",
        "100",
        "bob-ask-1",
    )
    w.bob_stream.wait(w.stack, ask.id, "new")

    bid = _order(
        alice.submit_order(
            LimitOrderRequest(
                symbol="AAPL", qty=4, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=100.00
            )
        )
    )
    fill = w.alice_stream.wait(w.stack, bid.id, "fill")
    assert (fill.order.status, fill.order.filled_qty, fill.price, fill.qty, fill.position_qty) == (
        OrderStatus.FILLED,
        "4",
        100.0,
        4.0,
        4.0,
    )
    partial = w.bob_stream.wait(w.stack, ask.id, "partial_fill")
    assert (partial.order.status, partial.order.filled_qty, partial.qty, partial.position_qty) == (
        OrderStatus.PARTIALLY_FILLED,
        "4",
        4.0,
        96.0,
    )
    assert w.alice_stream.events(bid.id) == ["new", "fill"]

    got = _order(alice.get_order_by_id(bid.id))
    assert (got.status, got.filled_qty, got.filled_avg_price) == (OrderStatus.FILLED, "4", "100")
    by_client = _order(bob.get_order_by_client_id("bob-ask-1"))
    assert (by_client.id, by_client.status, by_client.filled_qty) == (
        ask.id,
        OrderStatus.PARTIALLY_FILLED,
        "4",
    )
    with pytest.raises(APIError) as other:
        alice.get_order_by_id(ask.id)  # another customer's order does not exist for Alice
    assert other.value.status_code == 404

    # A notional market buy ($200 at 100 = 2 shares) and a fractional market buy (0.5) take the rest.
    notional = _order(
        alice.submit_order(
            MarketOrderRequest(symbol="AAPL", notional=200, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
    )
    assert (notional.notional, notional.qty, notional.type) == ("200", None, OrderType.MARKET)
    w.alice_stream.wait(w.stack, notional.id, "fill")
    fractional = _order(
        alice.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
    )
    w.alice_stream.wait(w.stack, fractional.id, "fill")
    assert _order(alice.get_order_by_id(notional.id)).filled_qty == "2"
    assert _order(alice.get_order_by_id(fractional.id)).filled_qty == "0.5"

    positions: Any = alice.get_all_positions()
    assert [(p.symbol, p.qty, p.avg_entry_price, p.cost_basis, p.side.value) for p in positions] == [
        ("AAPL", "6.5", "100", "650", "long")
    ]
    position: Any = alice.get_open_position("AAPL")
    assert (position.qty, position.qty_available) == ("6.5", "6.5")
    assert Decimal(str(alice.get_account().cash)) == Decimal("100000") - Decimal("650")  # type: ignore[union-attr]
    bob_position: Any = bob.get_open_position("AAPL")
    assert bob_position.qty == "93.5"

    # Bob bids 99 (below his own ask: no self-trade); Alice closes her position into that bid.
    bob_bid = _order(
        bob.submit_order(
            LimitOrderRequest(
                symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=99
            )
        )
    )
    w.bob_stream.wait(w.stack, bob_bid.id, "new")
    close = _order(alice.close_position("AAPL", ClosePositionRequest(qty="6.5")))
    assert (close.side, close.type, close.qty) == (OrderSide.SELL, OrderType.MARKET, "6.5")
    sold = w.alice_stream.wait(w.stack, close.id, "fill")
    assert (sold.price, sold.qty, sold.position_qty) == (99.0, 6.5, 0.0)
    with pytest.raises(APIError) as gone:
        alice.get_open_position("AAPL")
    assert gone.value.status_code == 404
    assert alice.get_all_positions() == []
    bob_fill = w.bob_stream.wait(w.stack, bob_bid.id, "partial_fill")
    assert (bob_fill.order.filled_qty, bob_fill.position_qty) == ("6.5", 100.0)

    # Bob cancels both of his resting orders one by one: 204, then the canceled updates.
    for order_id in (ask.id, bob_bid.id):
        bob.cancel_order_by_id(order_id)
        canceled = w.bob_stream.wait(w.stack, order_id, "canceled")
        assert canceled.order.status == OrderStatus.CANCELED
    # The ask traded three times (4, 2 and 0.5 shares), each a partial fill, before Bob canceled the rest.
    assert w.bob_stream.events(ask.id) == ["new", "partial_fill", "partial_fill", "partial_fill", "canceled"]
    assert w.bob_stream.events(bob_bid.id) == ["new", "partial_fill", "canceled"]
    with pytest.raises(APIError) as not_cancelable:
        bob.cancel_order_by_id(ask.id)
    assert not_cancelable.value.status_code == 422


# ----------------------------------------------------------------------------------------- every order type


def test_every_order_type_list_replace_and_cancel(world: World) -> None:
    w, alice = world, world.alice_api
    before = _buying_power(alice)
    buy, day, gtc = OrderSide.BUY, TimeInForce.DAY, TimeInForce.GTC
    requests: dict[str, Any] = {
        "limit": LimitOrderRequest(symbol="MSFT", qty=1, side=buy, time_in_force=day, limit_price=190),
        "stop": StopOrderRequest(symbol="MSFT", qty=1, side=buy, time_in_force=gtc, stop_price=210),
        "stop_limit": StopLimitOrderRequest(
            symbol="MSFT", qty=1, side=buy, time_in_force=gtc, stop_price=210, limit_price=212
        ),
        "trailing_stop": TrailingStopOrderRequest(
            symbol="MSFT", qty=1, side=buy, time_in_force=gtc, trail_price=5
        ),
        "bracket": LimitOrderRequest(
            symbol="MSFT",
            qty=2,
            side=buy,
            time_in_force=gtc,
            limit_price=189,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=220),
            stop_loss=StopLossRequest(stop_price=180, limit_price=179),
        ),
        "oto": LimitOrderRequest(
            symbol="MSFT",
            qty=1,
            side=buy,
            time_in_force=day,
            limit_price=188,
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=180),
        ),
        "fractional": LimitOrderRequest(
            symbol="MSFT", qty=0.25, side=buy, time_in_force=day, limit_price=187
        ),
    }
    placed = {name: _order(alice.submit_order(r)) for name, r in requests.items()}
    for name, order in placed.items():
        w.alice_stream.wait(w.stack, order.id, "new")
        assert order.client_order_id, name
    assert placed["trailing_stop"].trail_price == "5"
    assert (placed["stop_limit"].stop_price, placed["stop_limit"].limit_price) == ("210", "212")
    assert placed["fractional"].qty == "0.25"

    # OCO: Bob exits part of his GOOG holding with a take-profit and a stop-loss.
    oco = _order(
        w.bob_api.submit_order(
            LimitOrderRequest(
                symbol="GOOG",
                qty=5,
                side=OrderSide.SELL,
                time_in_force=gtc,
                limit_price=160,
                order_class=OrderClass.OCO,
                take_profit=TakeProfitRequest(limit_price=160),
                stop_loss=StopLossRequest(stop_price=140),
            )
        )
    )
    assert oco.order_class == OrderClass.OCO
    w.bob_stream.wait(w.stack, oco.id, "new")

    listed: Any = alice.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["MSFT"], side=buy, nested=True, limit=50)
    )
    assert sorted(str(o.id) for o in listed) == sorted(str(o.id) for o in placed.values())
    bracket = next(o for o in listed if str(o.id) == str(placed["bracket"].id))
    assert bracket.order_class == OrderClass.BRACKET
    assert sorted((leg.side, leg.type, leg.limit_price, leg.stop_price) for leg in bracket.legs) == sorted(
        [
            (OrderSide.SELL, OrderType.LIMIT, "220", None),
            (OrderSide.SELL, OrderType.STOP_LIMIT, "179", "180"),
        ]
    )
    assert alice.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["GOOG"])) == []
    # Not nested, the held exit legs are listed as orders of their own (sells, status held).
    oto = next(o for o in listed if str(o.id) == str(placed["oto"].id))
    legs: Any = alice.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, side=OrderSide.SELL))
    assert sorted((str(o.id), o.status) for o in legs) == sorted(
        (str(leg.id), OrderStatus.HELD) for leg in [*bracket.legs, *oto.legs]
    )
    by_client = _order(alice.get_order_by_client_id(placed["limit"].client_order_id))
    assert by_client.id == placed["limit"].id

    # Replace: a new order that replaces the old; the old one ends "replaced".
    new = _order(alice.replace_order_by_id(placed["limit"].id, ReplaceOrderRequest(qty=2, limit_price=191)))
    assert (new.replaces, new.qty, new.limit_price) == (placed["limit"].id, "2", "191")
    replaced = w.alice_stream.wait(w.stack, placed["limit"].id, "replaced")
    assert (replaced.order.status, replaced.order.replaced_by) == (OrderStatus.REPLACED, new.id)
    w.alice_stream.wait(w.stack, new.id, "new")

    # Cancel one by id (204), then every other open order at once (207 list).
    alice.cancel_order_by_id(placed["stop"].id)
    assert w.alice_stream.wait(w.stack, placed["stop"].id, "canceled").order.status == OrderStatus.CANCELED
    still_open = {str(o.id) for name, o in placed.items() if name not in ("limit", "stop")} | {str(new.id)}
    responses: Any = alice.cancel_orders()
    assert sorted((str(r.id), r.status) for r in responses) == sorted((i, 200) for i in still_open)
    for order_id in still_open:
        w.alice_stream.wait(w.stack, order_id, "canceled")
    assert alice.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []
    closed: Any = alice.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, symbols=["MSFT"]))
    assert sorted((str(o.id), o.status) for o in closed) == sorted(
        [(str(placed["limit"].id), OrderStatus.REPLACED)]
        + [(i, OrderStatus.CANCELED) for i in still_open | {str(placed["stop"].id)}]
        + [(str(o.id), OrderStatus.CANCELED) for o in legs]  # held legs die with their parent
    )
    # Every hold was released exactly: buying power is back where it started.
    assert _buying_power(alice) == before

    w.bob_api.cancel_order_by_id(oco.id)
    w.bob_stream.wait(w.stack, oco.id, "canceled")
    bob_goog: Any = w.bob_api.get_open_position("GOOG")
    assert (bob_goog.qty, bob_goog.qty_available) == ("100", "100")


def test_rejections_are_alpaca_errors(world: World) -> None:
    alice = world.alice_api
    with pytest.raises(APIError) as collar:
        alice.submit_order(
            LimitOrderRequest(
                symbol="IBM", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=80
            )
        )
    assert collar.value.status_code == 403
    with pytest.raises(APIError) as naked:
        alice.submit_order(
            MarketOrderRequest(symbol="IBM", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        )
    assert naked.value.status_code == 403
    with pytest.raises(APIError) as unknown:
        alice.get_order_by_id(uuid.uuid4())
    assert unknown.value.status_code == 404
    assert alice.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["IBM"])) == []


# ----------------------------------------------------------------------------------------- the market maker


@pytest.mark.parametrize(
    ("inventory_change", "sides"),
    [
        pytest.param(
            Decimal(0), [("buy", Decimal("99.80")), ("sell", Decimal("100.21"))], id="flat-two-sided"
        ),
        pytest.param(Decimal(500), [("sell", Decimal("100.21"))], id="long-limit-no-bid"),
        pytest.param(Decimal(-500), [("buy", Decimal("99.80"))], id="short-limit-no-ask"),
    ],
)
def test_market_maker_quotes_are_on_tick_and_inventory_bounded(
    inventory_change: Decimal, sides: list[tuple[str, Decimal]]
) -> None:
    from apps.orders.marketmaker import quotes_for

    # 100.001 * (1 -/+ 0.002) = 99.800998 / 100.201002: bids round down, asks up, to the cent tick.
    quotes = quotes_for(
        reference=Decimal("100.001"),
        tick=Decimal("0.01"),
        half_spread=Decimal("0.002"),
        qty=Decimal(10),
        inventory_change=inventory_change,
        max_inventory=Decimal(500),
    )
    assert [(q.side, q.price) for q in quotes] == sides
    assert {q.qty for q in quotes} == {Decimal(10)}


def test_market_maker_process_quotes_fills_and_cancels_on_sigterm(world: World) -> None:
    """``run_market_maker`` is an ordinary API client: Alice trades against its quote; SIGTERM cancels it."""
    import signal
    import subprocess
    import sys

    from tests.e2e.conftest import LOG_DIR, ROOT, subprocess_env

    w = world
    maker = customer_create(
        email="maker@e2e.example.com", cash=Decimal("100000"), shares={"NVDA": Decimal("1000")}
    )
    maker_api = TradingClient(maker.key_id, maker.secret, url_override=w.stack.base_url)
    argv = [
        sys.executable,
        "manage.py",
        "run_market_maker",
        "--base-url",
        w.stack.base_url,
        "--symbols",
        "NVDA",
    ]
    argv += ["--key-id", maker.key_id, "--secret-key", maker.secret, "--refresh", "0.5", "--qty", "10"]
    with (LOG_DIR / "market_maker.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    try:

        def quoted() -> list[Any] | None:
            orders: Any = maker_api.get_orders(
                GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["NVDA"])
            )
            live = [o for o in orders if o.status == OrderStatus.NEW]
            return live if len(live) == 2 else None

        quotes = eventually(quoted, what="two-sided NVDA quotes", stack=w.stack)
        assert sorted((o.side, o.limit_price, o.qty) for o in quotes) == [
            (OrderSide.BUY, "99.8", "10"),
            (OrderSide.SELL, "100.2", "10"),
        ]
        bought = _order(
            w.alice_api.submit_order(
                MarketOrderRequest(symbol="NVDA", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
            )
        )
        fill = w.alice_stream.wait(w.stack, bought.id, "fill")
        assert (fill.price, fill.qty) == (100.2, 3.0)
        assert _order(
            maker_api.get_order_by_id(next(o.id for o in quotes if o.side == OrderSide.SELL))
        ).filled_qty
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, (LOG_DIR / "market_maker.log").read_text()[-3000:]
    # Gone with it: every order it had open (the replaced partial fill included) is canceled.
    eventually(
        lambda: maker_api.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == [] or None,
        what="the market maker's orders to be canceled",
        stack=w.stack,
    )
    position: Any = maker_api.get_open_position("NVDA")
    assert position.qty == "997"


# ----------------------------------------------------------------------------------------- triggers


def _limit(symbol: str, qty: int, side: OrderSide, price: float, tif: TimeInForce = TimeInForce.DAY) -> Any:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=price)


def _print(w: World, seller: TradingClient, buyer: TradingClient, symbol: str, price: float) -> None:
    """One share trades at ``price`` between two customers (the seller's ask rests first)."""
    sells, buys = (w.bob_stream, w.alice_stream) if seller is w.bob_api else (None, w.alice_stream)
    ask = _order(seller.submit_order(_limit(symbol, 1, OrderSide.SELL, price)))
    if sells is not None:
        sells.wait(w.stack, ask.id, "new")
    else:
        _wait_status(w, seller, ask.id, OrderStatus.NEW)
    bid = _order(buyer.submit_order(_limit(symbol, 1, OrderSide.BUY, price)))
    buys.wait(w.stack, bid.id, "fill")


def test_stop_and_stop_limit_rest_until_a_trade_at_their_stop(world: World) -> None:
    w, alice, bob = world, world.alice_api, world.bob_api
    gtc, buy = TimeInForce.GTC, OrderSide.BUY
    stop = _order(
        alice.submit_order(
            StopOrderRequest(symbol="TSLA", qty=1, side=buy, time_in_force=gtc, stop_price=102)
        )
    )
    stop_limit = _order(
        alice.submit_order(
            StopLimitOrderRequest(
                symbol="TSLA", qty=1, side=buy, time_in_force=gtc, stop_price=102, limit_price=103
            )
        )
    )
    for order in (stop, stop_limit):
        w.alice_stream.wait(w.stack, order.id, "new")

    _print(w, bob, alice, "TSLA", 101)  # below the stops: nothing triggers
    ask = _order(bob.submit_order(_limit("TSLA", 3, OrderSide.SELL, 102)))
    w.bob_stream.wait(w.stack, ask.id, "new")  # a later command: the 101 print is fully projected
    for order in (stop, stop_limit):
        got = _order(alice.get_order_by_id(order.id))
        assert (got.status, got.filled_qty) == (OrderStatus.NEW, "0")

    # Alice buys one share at 102: the print reaches both stops, which then buy Bob's other two at 102.
    bid = _order(alice.submit_order(_limit("TSLA", 1, buy, 102)))
    w.alice_stream.wait(w.stack, bid.id, "fill")
    for order, otype in ((stop, OrderType.STOP), (stop_limit, OrderType.STOP_LIMIT)):
        fill = w.alice_stream.wait(w.stack, order.id, "fill")
        assert (fill.order.type, fill.order.status, fill.order.filled_avg_price, fill.price, fill.qty) == (
            otype,
            OrderStatus.FILLED,
            "102",
            102.0,
            1.0,
        )
        assert w.alice_stream.events(order.id) == ["new", "fill"]
    assert _wait_status(w, bob, ask.id, OrderStatus.FILLED).filled_qty == "3"


def test_trailing_stop_follows_the_high_water_mark_and_triggers(world: World) -> None:
    w, alice, bob = world, world.alice_api, world.bob_api
    carol = customer_create(
        email="carol@e2e.example.com", cash=Decimal("1000"), shares={"AMD": Decimal("10")}
    )
    carol_api = TradingClient(carol.key_id, carol.secret, url_override=w.stack.base_url)
    trailing = _order(
        bob.submit_order(
            TrailingStopOrderRequest(
                symbol="AMD", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, trail_price=2
            )
        )
    )
    w.bob_stream.wait(w.stack, trailing.id, "new")
    for price in (101, 104, 103):  # the water mark rises to 104 (stop 102); 103 is above the stop
        _print(w, carol_api, alice, "AMD", price)
    got = _order(bob.get_order_by_id(trailing.id))
    assert (got.status, got.filled_qty) == (OrderStatus.NEW, "0")

    bid = _order(alice.submit_order(_limit("AMD", 2, OrderSide.BUY, 102)))
    w.alice_stream.wait(w.stack, bid.id, "new")
    ask = _order(carol_api.submit_order(_limit("AMD", 1, OrderSide.SELL, 102)))  # prints 102: triggers
    fill = w.bob_stream.wait(w.stack, trailing.id, "fill")
    assert (fill.order.status, fill.order.type, fill.price, fill.qty) == (
        OrderStatus.FILLED,
        OrderType.TRAILING_STOP,
        102.0,
        1.0,
    )
    assert (fill.order.hwm, fill.order.stop_price, fill.order.trail_price) == ("104", "102", "2")
    assert w.bob_stream.events(trailing.id) == ["new", "fill"]
    assert _wait_status(w, carol_api, ask.id, OrderStatus.FILLED).filled_qty == "1"
    assert w.alice_stream.wait(w.stack, bid.id, "fill").order.filled_qty == "2"


# ----------------------------------------------------------------------------------------- oco, rejected


def test_oco_without_limit_price_takes_the_take_profit_limit(world: World) -> None:
    w, bob = world, world.bob_api
    oco = _order(
        bob.submit_order(
            LimitOrderRequest(
                symbol="GOOG",
                qty=5,
                side=OrderSide.SELL,
                time_in_force=TimeInForce.GTC,
                order_class=OrderClass.OCO,
                take_profit=TakeProfitRequest(limit_price=161),
                stop_loss=StopLossRequest(stop_price=139),
            )
        )
    )
    assert (oco.order_class, oco.type, oco.limit_price, oco.qty) == (
        OrderClass.OCO,
        OrderType.LIMIT,
        "161",
        "5",
    )
    new = w.bob_stream.wait(w.stack, oco.id, "new")
    assert [(leg.type, leg.stop_price, leg.side) for leg in new.order.legs or []] == [
        (OrderType.STOP, "139", OrderSide.SELL)
    ]
    position: Any = bob.get_open_position("GOOG")
    assert (position.qty, position.qty_available) == ("100", "95")
    bob.cancel_order_by_id(oco.id)
    w.bob_stream.wait(w.stack, oco.id, "canceled")
    position = bob.get_open_position("GOOG")
    assert position.qty_available == "100"


def _engine_command_record(command: Any, key: str) -> None:
    """Record an engine command through the outbox, as the session clock does (ordered with the orders)."""
    import msgspec
    from django.db import transaction

    from apps.core.outbox import event_record
    from apps.orders.engine_runner import command_event_type

    with transaction.atomic():
        event_record(
            topic="orders.commands",
            key=key,
            event_type=command_event_type(command),
            aggregate_type="market_session",
            aggregate_id=key,
            payload={"command": msgspec.to_builtins(command)},
        )


def test_engine_rejection_reaches_the_stream_with_the_order(world: World) -> None:
    from engine.commands import Halt

    w, alice = world, world.alice_api
    before = _buying_power(alice)
    _engine_command_record(Halt(symbol="HALTX"), key="HALTX")  # the venue halts; the asset row does not know
    order = _order(alice.submit_order(_limit("HALTX", 2, OrderSide.BUY, 50)))
    rejected = w.alice_stream.wait(w.stack, order.id, "rejected")
    assert (
        str(rejected.order.id),
        rejected.order.status,
        rejected.order.qty,
        rejected.order.limit_price,
    ) == (
        str(order.id),
        OrderStatus.REJECTED,
        "2",
        "50",
    )
    assert rejected.order.failed_at is not None
    assert w.alice_stream.events(order.id) == ["rejected"]
    assert _buying_power(alice) == before  # the hold came back


# ----------------------------------------------------------------------------------------- the close (LAST)


def test_day_order_expires_at_the_session_close(world: World) -> None:
    """SessionClose expires every day order of the partition: this test must stay the module's last."""
    from apps.core import kafka
    from apps.orders.engine_runner_session import session_commands_record

    w, alice = world, world.alice_api
    before = _buying_power(alice)
    day = _order(alice.submit_order(_limit("DAYX", 1, OrderSide.BUY, 95)))
    gtc = _order(alice.submit_order(_limit("DAYX", 1, OrderSide.BUY, 94, TimeInForce.GTC)))
    for order in (day, gtc):
        w.alice_stream.wait(w.stack, order.id, "new")
    assert _buying_power(alice) == before - Decimal("189")

    now = datetime.now(UTC)
    recorded = session_commands_record(
        kind="close",
        session_date=now.date(),
        occurred_at=now,
        partitions=kafka.declared_topic("orders.commands").partitions,
    )
    assert recorded == kafka.declared_topic("orders.commands").partitions
    expired = w.alice_stream.wait(w.stack, day.id, "expired")
    assert (expired.order.status, expired.order.filled_qty, expired.order.time_in_force) == (
        OrderStatus.EXPIRED,
        "0",
        TimeInForce.DAY,
    )
    assert expired.order.expired_at is not None
    assert w.alice_stream.events(day.id) == ["new", "expired"]
    assert _order(alice.get_order_by_id(gtc.id)).status == OrderStatus.NEW
    assert _buying_power(alice) == before - Decimal("94")
    alice.cancel_order_by_id(gtc.id)
    w.alice_stream.wait(w.stack, gtc.id, "canceled")
    assert _buying_power(alice) == before

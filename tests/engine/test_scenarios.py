"""Hand-checked matching scenarios for engine.Engine."""

from __future__ import annotations

import pytest

from engine import (
    CancelOrder,
    Engine,
    Halt,
    NewOrder,
    ReplaceOrder,
    Resume,
    SessionClose,
    SessionOpen,
    SetReferencePrice,
    StopLoss,
    TakeProfit,
)
from engine.events import (
    BookLevelChanged,
    OrderAccepted,
    OrderActivated,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderReplaced,
    OrderTriggered,
)
from tests.engine.helpers import SYM, cancels, fills, kinds, limit, market, trades


class Feed:
    """An engine plus an auto-incrementing input position."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0

    def __call__(self, cmd: object) -> list:  # type: ignore[type-arg]
        self.seq += 1
        return self.engine.apply(self.seq, cmd)  # type: ignore[arg-type]

    def depth(self, is_buy: bool) -> list[tuple[int, int, int]]:
        book = self.engine.book(SYM)
        assert book is not None
        return book.depth(is_buy)


@pytest.fixture
def feed() -> Feed:
    return Feed()


def test_partial_fills_across_levels_at_maker_prices(feed: Feed) -> None:
    feed(limit("s1", "sell", 5, 101))
    feed(limit("s2", "sell", 5, 102))
    feed(limit("s3", "sell", 5, 103))
    ev = feed(limit("b1", "buy", 8, 102, acct="b"))
    assert trades(ev) == [("4:0", 101, 5, "b1", "s1"), ("4:1", 102, 3, "b1", "s2")]
    assert fills(ev) == [
        ("s1", 101, 5, 0, "maker"),
        ("b1", 101, 5, 3, "taker"),
        ("s2", 102, 3, 2, "maker"),
        ("b1", 102, 3, 0, "taker"),
    ]
    assert feed.depth(False) == [(102, 2, 1), (103, 5, 1)]
    assert feed.depth(True) == []
    l2 = [(e.side, e.price_e4, e.qty_e9, e.order_count) for e in ev if isinstance(e, BookLevelChanged)]
    assert l2 == [("sell", 101, 0, 0), ("sell", 102, 2, 1)]
    book_seqs = [e.book_seq for e in ev]
    assert book_seqs == list(range(book_seqs[0], book_seqs[0] + len(ev)))


def test_remainder_rests_and_time_priority_within_level(feed: Feed) -> None:
    feed(limit("s1", "sell", 5, 100))
    feed(limit("s2", "sell", 5, 100))
    ev = feed(limit("b1", "buy", 7, 100, acct="b"))
    assert [f[0] for f in fills(ev)] == ["s1", "b1", "s2", "b1"]
    assert feed.depth(False) == [(100, 3, 1)]
    ev = feed(limit("b2", "buy", 10, 100, acct="b"))
    assert fills(ev) == [("s2", 100, 3, 0, "maker"), ("b2", 100, 3, 7, "taker")]
    assert feed.depth(True) == [(100, 7, 1)]


def test_market_order_remainder_and_no_liquidity(feed: Feed) -> None:
    ev = feed(market("m0", "buy", 5))
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert cancels(ev) == [("m0", "market_no_liquidity")]
    feed(limit("s1", "sell", 3, 100))
    ev = feed(market("m1", "buy", 5, acct="b"))
    assert fills(ev)[1] == ("m1", 100, 3, 2, "taker")
    assert cancels(ev) == [("m1", "market_no_liquidity")]
    assert [e.canceled_qty_e9 for e in ev if isinstance(e, OrderCanceled)] == [2]


def test_market_buy_by_notional(feed: Feed) -> None:
    feed(limit("s1", "sell", 2_000_000_000, 100_0000))  # 2 shares @ $100
    feed(limit("s2", "sell", 5_000_000_000, 101_0000))
    # $150 buys 1.5 shares at $100 (exact, 1e-9 share units): 150e4*1e9 // 100e4 = 1.5e9
    ev = feed(
        NewOrder(
            order_id="n1",
            account_id="b",
            symbol=SYM,
            side="buy",
            type="market",
            tif="day",
            notional_e4=150_0000,
        )
    )
    assert fills(ev) == [
        ("s1", 100_0000, 1_500_000_000, 500_000_000, "maker"),
        ("n1", 100_0000, 1_500_000_000, 0, "taker"),
    ]
    assert cancels(ev) == []
    assert feed.engine.orders.get("n1") is None


def test_ioc_cancels_remainder(feed: Feed) -> None:
    feed(limit("s1", "sell", 3, 100))
    ev = feed(limit("b1", "buy", 5, 100, acct="b", tif="ioc"))
    assert fills(ev)[1] == ("b1", 100, 3, 2, "taker")
    assert cancels(ev) == [("b1", "ioc_remainder")]
    assert feed.depth(True) == []


def test_fok_all_or_nothing_without_state_change(feed: Feed) -> None:
    feed(limit("s1", "sell", 3, 100))
    feed(limit("s2", "sell", 3, 101))
    feed(limit("own", "sell", 10, 100, acct="b"))  # same account as the FOK: not available liquidity
    before = feed.engine.state_hash()
    ev = feed(limit("f1", "buy", 7, 101, acct="b", tif="fok"))
    assert kinds(ev) == ["OrderAccepted", "OrderCanceled"]
    assert cancels(ev) == [("f1", "fok_unfilled")]
    book = feed.engine.book(SYM)
    assert book is not None
    assert book.depth(False) == [(100, 13, 2), (101, 3, 1)]
    assert feed.engine.state_hash() != before  # only the book_seq/arrival counters moved
    ev = feed(limit("f2", "buy", 6, 101, acct="b", tif="fok"))
    assert [f[:3] for f in fills(ev) if f[0] == "f2"] == [("f2", 100, 3), ("f2", 101, 3)]
    assert cancels(ev) == [("own", "self_trade")]


def test_cancel_partially_filled_order(feed: Feed) -> None:
    feed(limit("s1", "sell", 10, 100))
    feed(limit("b1", "buy", 4, 100, acct="b"))
    ev = feed(CancelOrder(order_id="s1"))
    assert cancels(ev) == [("s1", "user")]
    assert (ev[0].cum_qty_e9, ev[0].canceled_qty_e9) == (4, 6)
    assert feed.depth(False) == []
    ev = feed(CancelOrder(order_id="s1"))
    assert isinstance(ev[0], OrderRejected)
    assert ev[0].reason == "unknown_order"


def test_replace_loses_time_priority(feed: Feed) -> None:
    feed(limit("s1", "sell", 5, 100))
    feed(limit("s2", "sell", 5, 100))
    ev = feed(ReplaceOrder(order_id="s1", new_order_id="s1b", qty_e9=4))
    assert isinstance(ev[0], OrderReplaced)
    assert (ev[0].order_id, ev[0].new_order_id) == ("s1", "s1b")
    assert isinstance(ev[1], OrderAccepted)
    assert feed.depth(False) == [(100, 9, 2)]
    ev = feed(limit("b1", "buy", 5, 100, acct="b"))
    assert fills(ev)[0][0] == "s2"  # s1b went to the back of the queue


def test_replace_price_can_cross_and_match(feed: Feed) -> None:
    feed(limit("s1", "sell", 5, 101))
    feed(limit("b1", "buy", 5, 99, acct="b"))
    ev = feed(ReplaceOrder(order_id="b1", new_order_id="b1b", limit_price_e4=101))
    assert trades(ev) == [("3:0", 101, 5, "b1b", "s1")]


def test_self_trade_prevention_cancels_resting_and_continues(feed: Feed) -> None:
    feed(limit("own", "sell", 5, 100, acct="a"))
    feed(limit("other", "sell", 5, 100, acct="x"))
    ev = feed(limit("b1", "buy", 5, 100, acct="a"))
    assert cancels(ev) == [("own", "self_trade")]
    assert trades(ev) == [("3:0", 100, 5, "b1", "other")]
    assert feed.depth(False) == []


def test_stop_triggers_on_last_trade(feed: Feed) -> None:
    feed(
        NewOrder(
            order_id="st",
            account_id="c",
            symbol=SYM,
            side="buy",
            type="stop",
            tif="gtc",
            qty_e9=2,
            stop_price_e4=105,
        )
    )
    feed(limit("s1", "sell", 1, 104))
    feed(limit("s2", "sell", 5, 106))
    ev = feed(limit("b1", "buy", 1, 104, acct="b"))  # last = 104 < 105: nothing
    assert not any(isinstance(e, OrderTriggered) for e in ev)
    feed(limit("s3", "sell", 1, 105))
    ev = feed(limit("b2", "buy", 1, 105, acct="b"))  # last = 105 >= 105: stop fires as a market buy
    trig = [e for e in ev if isinstance(e, OrderTriggered)]
    assert [(t.order_id, t.new_type) for t in trig] == [("st", "market")]
    assert [f for f in fills(ev) if f[0] == "st"] == [("st", 106, 2, 0, "taker")]


def test_stop_limit_becomes_resting_limit(feed: Feed) -> None:
    feed(
        NewOrder(
            order_id="sl", account_id="c", symbol=SYM, side="sell", type="stop_limit", tif="day",
            qty_e9=3, stop_price_e4=95, limit_price_e4=94,
        )
    )  # fmt: skip
    feed(limit("b0", "buy", 1, 95, acct="b"))
    ev = feed(limit("s0", "sell", 1, 95, acct="x"))
    assert [(e.order_id, e.new_type) for e in ev if isinstance(e, OrderTriggered)] == [("sl", "limit")]
    assert feed.depth(False) == [(94, 3, 1)]


def test_trailing_stop_tracks_high_water_mark(feed: Feed) -> None:
    feed(SetReferencePrice(symbol=SYM, price_e4=100))
    feed(
        NewOrder(
            order_id="ts", account_id="c", symbol=SYM, side="sell", type="trailing_stop", tif="gtc",
            qty_e9=1, trail_price_e4=5,
        )
    )  # fmt: skip
    book = feed.engine.book(SYM)
    assert book is not None
    assert book.trailing["ts"].stop == 95
    for i, px in enumerate([103, 110, 106]):  # hwm rises to 110 -> stop 105; 106 does not trigger
        feed(limit(f"b{i}", "buy", 1, px, acct="b"))
        ev = feed(limit(f"s{i}", "sell", 1, px, acct="x"))
        assert not any(isinstance(e, OrderTriggered) for e in ev)
    assert book.trailing["ts"].stop == 105
    feed(limit("bid", "buy", 5, 90, acct="b"))
    feed(limit("b9", "buy", 1, 105, acct="b"))
    ev = feed(limit("s9", "sell", 1, 105, acct="x"))
    assert [e.order_id for e in ev if isinstance(e, OrderTriggered)] == ["ts"]
    assert [f for f in fills(ev) if f[0] == "ts"] == [("ts", 90, 1, 0, "taker")]


def test_trailing_stop_percent_rounds_away(feed: Feed) -> None:
    feed(SetReferencePrice(symbol=SYM, price_e4=10_001))
    feed(
        NewOrder(
            order_id="tb", account_id="c", symbol=SYM, side="buy", type="trailing_stop", tif="day",
            qty_e9=1, trail_percent_bps=150,
        )
    )  # fmt: skip
    book = feed.engine.book(SYM)
    assert book is not None
    # 10001 * 1.015 = 10151.015 -> buy stop rounds up to 10152
    assert book.trailing["tb"].stop == 10_152


def bracket(oid: str = "e1") -> NewOrder:
    return NewOrder(
        order_id=oid, account_id="c", symbol=SYM, side="buy", type="limit", tif="gtc", qty_e9=10,
        limit_price_e4=100, order_class="bracket",
        take_profit=TakeProfit(limit_price_e4=110), stop_loss=StopLoss(stop_price_e4=90),
    )  # fmt: skip


def test_bracket_legs_activate_on_entry_fill_and_are_oco(feed: Feed) -> None:
    ev = feed(bracket())
    assert [e.order_id for e in ev if isinstance(e, OrderAccepted)] == ["e1", "e1:tp", "e1:sl"]
    assert feed.depth(False) == []  # legs are held
    ev = feed(limit("s1", "sell", 10, 100, acct="x"))
    act = [(e.order_id, e.qty_e9) for e in ev if isinstance(e, OrderActivated)]
    assert act == [("e1:tp", 10), ("e1:sl", 10)]
    assert feed.depth(False) == [(110, 10, 1)]
    ev = feed(limit("b1", "buy", 4, 110, acct="x"))  # partial take-profit fill cancels the stop-loss
    assert fills(ev)[0] == ("e1:tp", 110, 4, 6, "maker")
    assert cancels(ev) == [("e1:sl", "oco_sibling")]
    assert "e1:sl" not in feed.engine.orders


@pytest.mark.parametrize("taken", ["e1:tp", "e1:sl"])
def test_a_bracket_whose_leg_would_reuse_a_live_orders_id_is_rejected(feed: Feed, taken: str) -> None:
    # Leg ids are derived (<id>:tp, <id>:sl); one equal to a live order's id would name two orders at once (the
    # auction, stop and trailing books key orders by id: canceling one removed the other from them).
    feed(limit(taken, "sell", 5, 200, acct="x", tif="gtc"))
    ev = feed(bracket())
    assert [(type(e).__name__, e.order_id, getattr(e, "reason", None)) for e in ev] == [
        ("OrderRejected", "e1", "duplicate_order_id")
    ]
    assert list(feed.engine.orders) == [taken]
    feed(CancelOrder(order_id=taken))
    assert [e.order_id for e in feed(bracket()) if isinstance(e, OrderAccepted)] == ["e1", "e1:tp", "e1:sl"]


def test_bracket_partial_entry_then_cancel_activates_legs_for_filled_qty(feed: Feed) -> None:
    feed(bracket())
    feed(limit("s1", "sell", 4, 100, acct="x"))
    ev = feed(CancelOrder(order_id="e1"))
    assert cancels(ev) == [("e1", "user")]
    assert [(e.order_id, e.qty_e9) for e in ev if isinstance(e, OrderActivated)] == [
        ("e1:tp", 4),
        ("e1:sl", 4),
    ]


def test_bracket_unfilled_entry_cancel_cancels_legs(feed: Feed) -> None:
    feed(bracket())
    ev = feed(CancelOrder(order_id="e1"))
    assert cancels(ev) == [("e1", "user"), ("e1:tp", "parent_canceled"), ("e1:sl", "parent_canceled")]
    assert feed.engine.orders == {}


def test_bracket_stop_loss_fires_and_cancels_take_profit(feed: Feed) -> None:
    feed(bracket())
    feed(limit("s1", "sell", 10, 100, acct="x"))
    feed(limit("b1", "buy", 20, 85, acct="y"))
    feed(limit("b2", "buy", 1, 90, acct="y"))
    ev = feed(limit("s2", "sell", 1, 90, acct="x"))  # last = 90 <= 90
    assert [e.order_id for e in ev if isinstance(e, OrderTriggered)] == ["e1:sl"]
    assert cancels(ev) == [("e1:tp", "oco_sibling")]
    assert [f for f in fills(ev) if f[0] == "e1:sl"] == [("e1:sl", 85, 10, 0, "taker")]


def test_oco_fill_on_limit_cancels_stop(feed: Feed) -> None:
    feed(
        NewOrder(
            order_id="o1", account_id="c", symbol=SYM, side="sell", type="limit", tif="gtc", qty_e9=5,
            limit_price_e4=120, order_class="oco", take_profit=TakeProfit(limit_price_e4=120),
            stop_loss=StopLoss(stop_price_e4=80),
        )
    )  # fmt: skip
    assert set(feed.engine.orders) == {"o1", "o1:sl"}
    ev = feed(limit("b1", "buy", 1, 120, acct="x"))
    assert cancels(ev) == [("o1:sl", "oco_sibling")]


def test_oto_child_activates_on_full_fill_only(feed: Feed) -> None:
    feed(
        NewOrder(
            order_id="p", account_id="c", symbol=SYM, side="buy", type="limit", tif="day", qty_e9=4,
            limit_price_e4=100, order_class="oto", take_profit=TakeProfit(limit_price_e4=105),
        )
    )  # fmt: skip
    ev = feed(limit("s1", "sell", 3, 100, acct="x"))
    assert not any(isinstance(e, OrderActivated) for e in ev)
    ev = feed(limit("s2", "sell", 1, 100, acct="x"))
    assert [(e.order_id, e.qty_e9) for e in ev if isinstance(e, OrderActivated)] == [("p:tp", 4)]
    assert feed.depth(False) == [(105, 4, 1)]


def test_opening_auction_uncross_hand_checked(feed: Feed) -> None:
    feed(SetReferencePrice(symbol=SYM, price_e4=100))
    # buys: 10@102, 10@101, 5 market; sells: 8@99, 10@100, 12@101
    feed(limit("b1", "buy", 10, 102, acct="b", tif="opg"))
    feed(limit("b2", "buy", 10, 101, acct="b", tif="opg"))
    feed(market("b3", "buy", 5, acct="b", tif="opg"))
    feed(limit("s1", "sell", 8, 99, acct="s", tif="opg"))
    feed(limit("s2", "sell", 10, 100, acct="s", tif="opg"))
    feed(limit("s3", "sell", 12, 101, acct="s", tif="opg"))
    # p=99: buy 25, sell 8 -> 8; p=100: 25/18 -> 18; p=101: 25/30 -> 25; p=102: 15/30 -> 15  => 101
    ev = feed(SessionOpen())
    assert {t[1] for t in trades(ev)} == {101}
    assert sum(t[2] for t in trades(ev)) == 25
    assert [t[3:] for t in trades(ev)] == [
        ("b3", "s1"),
        ("b1", "s1"),
        ("b1", "s2"),
        ("b2", "s2"),
        ("b2", "s3"),
    ]
    assert cancels(ev) == [("s3", "auction_unfilled")]
    assert [e.canceled_qty_e9 for e in ev if isinstance(e, OrderCanceled)] == [5]
    ev = feed(limit("late", "buy", 1, 100, tif="opg"))
    assert isinstance(ev[0], OrderRejected)
    assert ev[0].reason == "auction_closed"


def test_auction_tie_breaks_on_imbalance_then_reference() -> None:
    from engine.book import Order

    def o(oid: str, buy: bool, qty: int, px: int) -> Order:
        return Order(oid, "a", SYM, buy, "limit", "opg", qty, 0, 0, px, 0, 0, 0, 0, qty, 0, 1, 3)

    # 10 buy @ 105, 10 sell @ 95: every price 95..105 executes 10 with zero imbalance -> closest to ref
    pend = [o("b", True, 10, 105), o("s", False, 10, 95)]
    assert Engine is not None
    from engine.book import OrderBook

    assert OrderBook.auction_price(pend, 101) == 101
    assert OrderBook.auction_price(pend, 0) == 95  # no reference: lower candidate
    assert OrderBook.auction_price([o("b", True, 10, 90), o("s", False, 10, 95)], 92) == 0


def test_session_close_runs_cls_auction_then_expires_day_orders(feed: Feed) -> None:
    feed(SessionOpen())
    feed(limit("d1", "buy", 5, 90))
    feed(limit("g1", "buy", 5, 91, tif="gtc"))
    feed(limit("c1", "buy", 5, 100, acct="b", tif="cls"))
    feed(limit("c2", "sell", 5, 100, acct="s", tif="cls"))
    ev = feed(SessionClose())
    assert trades(ev) == [("6:0", 100, 5, "c1", "c2")]
    assert [e.order_id for e in ev if isinstance(e, OrderExpired)] == ["d1"]
    assert set(feed.engine.orders) == {"g1"}


def test_halt_rejects_new_orders_and_resume_allows(feed: Feed) -> None:
    feed(limit("s1", "sell", 5, 100))
    feed(Halt(symbol=SYM))
    ev = feed(limit("b1", "buy", 5, 100, acct="b"))
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == "halted"
    ev = feed(CancelOrder(order_id="s1"))  # cancels still work while halted
    assert cancels(ev) == [("s1", "user")]
    feed(Resume(symbol=SYM))
    ev = feed(limit("b2", "buy", 5, 100, acct="b"))
    assert kinds(ev) == ["OrderAccepted", "BookLevelChanged"]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        pytest.param({"qty_e9": 0}, "invalid_quantity", id="zero-qty"),
        pytest.param({"qty_e9": None}, "invalid_quantity", id="no-qty"),
        pytest.param({"limit_price_e4": None}, "invalid_price", id="limit-without-price"),
        pytest.param({"stop_price_e4": 5}, "invalid_price", id="stop-on-limit"),
        pytest.param({"extended_hours": True, "tif": "gtc"}, "invalid_order", id="ext-hours-gtc"),
    ],
)
def test_rejections(feed: Feed, kw: dict[str, object], reason: str) -> None:
    base = {"order_id": "x", "account_id": "a", "symbol": SYM, "side": "buy", "type": "limit", "tif": "day",
            "qty_e9": 1, "limit_price_e4": 100}  # fmt: skip
    base.update(kw)
    ev = feed(NewOrder(**base))  # type: ignore[arg-type]
    assert kinds(ev) == ["OrderRejected"]
    assert ev[0].reason == reason
    assert feed.engine.orders == {}


def test_duplicate_live_order_id_rejected(feed: Feed) -> None:
    feed(limit("x", "buy", 1, 100))
    ev = feed(limit("x", "buy", 1, 100))
    assert ev[0].reason == "duplicate_order_id"


def test_stale_seq_is_a_noop(feed: Feed) -> None:
    feed(limit("x", "buy", 1, 100))
    h = feed.engine.state_hash()
    assert feed.engine.apply(1, limit("y", "buy", 1, 100)) == []
    assert feed.engine.state_hash() == h

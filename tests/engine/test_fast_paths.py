"""Exact events of the engine's hot paths (submit_plain, cancel_resting, replace_plain, the inlined fill).

Each case pins the full event list, including book_seq and the L2 deltas, that the general path defines.
"""

from __future__ import annotations

from engine import CancelOrder, Engine, ReplaceOrder
from engine.events import (
    BookLevelChanged,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderReplaced,
    TradeExecuted,
)
from tests.engine.helpers import SYM, limit, market


def run(engine: Engine, *cmds: object) -> list[Event]:
    out: list[Event] = []
    for cmd in cmds:
        out = engine.apply(engine.last_seq + 1, cmd)  # type: ignore[arg-type]
    return out


def test_resting_limit_events_and_ladder() -> None:
    eng = Engine()
    ev = run(eng, limit("b1", "buy", 5, 100, tif="gtc"))
    assert ev == [
        OrderAccepted(SYM, 1, 0, "b1", "a", "buy", "limit", "gtc", 5, 0, 100, 0, ""),
        BookLevelChanged(SYM, 2, 0, "buy", 100, 5, 1),
    ]
    run(eng, limit("b2", "buy", 3, 101), limit("b3", "buy", 2, 99))
    book = eng.book(SYM)
    assert book is not None
    assert book.bid_keys == [99, 100, 101]
    assert book.best_bid() == 101
    assert book.best_ask() is None


def test_non_crossing_ioc_builds_no_order() -> None:
    eng = Engine()
    run(eng, limit("s1", "sell", 5, 105))
    ev = run(eng, limit("b1", "buy", 4, 104, acct="b", tif="ioc"))
    assert ev == [
        OrderAccepted(SYM, 3, 1, "b1", "b", "buy", "limit", "ioc", 4, 0, 104, 0, ""),
        OrderCanceled(SYM, 4, 1, "b1", "ioc_remainder", 0, 4),
    ]
    assert list(eng.orders) == ["s1"]


def test_cancel_last_order_of_level_publishes_empty_level_and_drops_it() -> None:
    eng = Engine()
    run(eng, limit("s1", "sell", 5, 105), limit("s2", "sell", 5, 106))
    ev = run(eng, CancelOrder(order_id="s1"))
    assert ev == [
        OrderCanceled(SYM, 5, 2, "s1", "user", 0, 5),
        BookLevelChanged(SYM, 6, 2, "sell", 105, 0, 0),
    ]
    book = eng.book(SYM)
    assert book is not None
    assert book.ask_keys == [-106]
    assert list(book.asks) == [106]
    assert book.best_ask() == 106


def test_replace_to_same_price_after_emptying_level() -> None:
    eng = Engine()
    run(eng, limit("b1", "buy", 5, 100))
    ev = run(eng, ReplaceOrder(order_id="b1", new_order_id="b2", qty_e9=7))
    assert ev == [
        OrderReplaced(SYM, 3, 1, "b1", "b2", 0),
        OrderAccepted(SYM, 4, 1, "b2", "a", "buy", "limit", "day", 7, 0, 100, 0, ""),
        BookLevelChanged(SYM, 5, 1, "buy", 100, 7, 1),
    ]


def test_replace_to_other_price_publishes_both_levels_in_touch_order() -> None:
    eng = Engine()
    run(eng, limit("b1", "buy", 5, 100), limit("b0", "buy", 1, 101, acct="z"))
    ev = run(eng, ReplaceOrder(order_id="b1", new_order_id="b2", limit_price_e4=101))
    assert ev == [
        OrderReplaced(SYM, 5, 2, "b1", "b2", 0),
        OrderAccepted(SYM, 6, 2, "b2", "a", "buy", "limit", "day", 5, 0, 101, 0, ""),
        BookLevelChanged(SYM, 7, 2, "buy", 100, 0, 0),
        BookLevelChanged(SYM, 8, 2, "buy", 101, 6, 2),
    ]
    book = eng.book(SYM)
    assert book is not None
    assert book.bid_keys == [101]


def test_market_sweeps_levels_with_inlined_fill_events() -> None:
    eng = Engine()
    run(eng, limit("s1", "sell", 2, 101), limit("s2", "sell", 5, 102))
    ev = run(eng, market("m1", "buy", 4, acct="b"))
    assert ev == [
        OrderAccepted(SYM, 5, 2, "m1", "b", "buy", "market", "day", 4, 0, 0, 0, ""),
        TradeExecuted(SYM, 6, 2, "2:0", 101, 2, "m1", "s1", "buy"),
        OrderFilled(SYM, 7, 2, "s1", "a", "sell", "2:0:s", "2:0", 101, 2, 0, 2, "maker"),
        OrderFilled(SYM, 8, 2, "m1", "b", "buy", "2:0:b", "2:0", 101, 2, 2, 2, "taker"),
        TradeExecuted(SYM, 9, 2, "2:1", 102, 2, "m1", "s2", "buy"),
        OrderFilled(SYM, 10, 2, "s2", "a", "sell", "2:1:s", "2:1", 102, 2, 3, 2, "maker"),
        OrderFilled(SYM, 11, 2, "m1", "b", "buy", "2:1:b", "2:1", 102, 2, 0, 4, "taker"),
        BookLevelChanged(SYM, 12, 2, "sell", 101, 0, 0),
        BookLevelChanged(SYM, 13, 2, "sell", 102, 3, 1),
    ]
    book = eng.book(SYM)
    assert book is not None
    assert book.ask_keys == [-102]

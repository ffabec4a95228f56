"""Stock splits in the engine's books (``SplitApply``): hand-checked adjustments, priority, idempotence, snapshots.

Prices are in 1e-4 USD with a 0.01 tick (``TICK`` = 100); quantities in 1e-9 share.
"""

from __future__ import annotations

import pytest

from engine import CancelOrder, Engine, NewOrder, SetReferencePrice, SplitApply
from engine.book import split_price, split_qty
from engine.commands import decode_command, encode_command
from engine.events import (
    BookLevelChanged,
    Event,
    OrderAdjusted,
    OrderCanceled,
    SplitApplied,
)
from tests.engine.helpers import SHARE, SYM, USD, fills, kinds, limit, market

TICK = 100  # 0.01 USD


class Feed:
    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0

    def __call__(self, cmd: object) -> list[Event]:
        self.seq += 1
        return self.engine.apply(self.seq, cmd)  # type: ignore[arg-type]


def split(num: int, den: int, split_id: str = "ca:1", symbol: str = SYM) -> SplitApply:
    return SplitApply(symbol=symbol, split_id=split_id, numerator=num, denominator=den, tick_e4=TICK)


def adjusted(events: list[Event]) -> dict[str, tuple[int, int, int, int, int, int, int]]:
    """order_id -> (qty, leaves, cum, limit, stop, trail_price, water) per OrderAdjusted."""
    return {
        e.order_id: (
            e.qty_e9,
            e.leaves_qty_e9,
            e.cum_qty_e9,
            e.limit_price_e4,
            e.stop_price_e4,
            e.trail_price_e4,
            e.water_e4,
        )
        for e in events
        if isinstance(e, OrderAdjusted)
    }


@pytest.mark.parametrize(
    ("value", "num", "den", "up", "expected"),
    [
        pytest.param(100_0100, 2, 1, False, 50_0000, id="2for1-down-50.005-to-50.00"),
        pytest.param(100_0100, 2, 1, True, 50_0100, id="2for1-up-50.005-to-50.01"),
        pytest.param(99_9900, 3, 1, False, 33_3300, id="3for1-exact"),
        pytest.param(10_0000, 1, 10, False, 100_0000, id="1for10-reverse"),
        pytest.param(100, 1000, 1, False, 100, id="never-below-one-tick"),
        pytest.param(0, 2, 1, True, 0, id="zero-means-none"),
    ],
)
def test_split_price_rounds_on_the_tick(value: int, num: int, den: int, up: bool, expected: int) -> None:
    assert split_price(value, num, den, TICK, up) == expected


@pytest.mark.parametrize(
    ("value", "num", "den", "whole", "expected"),
    [
        pytest.param(3 * SHARE, 3, 2, True, 4 * SHARE, id="3for2-4.5-whole-4"),
        pytest.param(3 * SHARE, 3, 2, False, 4_500_000_000, id="3for2-fractional-4.5"),
        pytest.param(7 * SHARE, 1, 10, True, 0, id="1for10-rounds-to-zero"),
        pytest.param(1, 1, 3, False, 0, id="one-quantum-1for3"),
        pytest.param(1_000_000_001, 2, 3, False, 666_666_667, id="floor-to-quantum"),
    ],
)
def test_split_qty_rounds_down(value: int, num: int, den: int, whole: bool, expected: int) -> None:
    assert split_qty(value, num, den, whole) == expected


def test_resting_orders_take_post_split_terms_and_a_new_order_fills_at_them() -> None:
    feed = Feed()
    feed(SetReferencePrice(symbol=SYM, price_e4=100 * USD))
    feed(limit("s1", "sell", 3 * SHARE, 100_0100, acct="mm"))  # 100.01
    feed(limit("b1", "buy", 5 * SHARE // 2, 99_0100, acct="c"))  # 2.5 @ 99.01 (fractional buy)
    ev = feed(split(2, 1))
    assert kinds(ev) == [
        "SplitApplied",
        "OrderAdjusted",
        "OrderAdjusted",
        "BookLevelChanged",
        "BookLevelChanged",
        "BookLevelChanged",
        "BookLevelChanged",
    ]
    assert ev[0] == SplitApplied(SYM, 5, 4, "ca:1", 2, 1, TICK)
    # sell limit rounds up (50.005 -> 50.01), buy limit down (49.505 -> 49.50); qty x2.
    assert adjusted(ev) == {
        "s1": (6 * SHARE, 6 * SHARE, 0, 50_0100, 0, 0, 0),
        "b1": (5 * SHARE, 5 * SHARE, 0, 49_5000, 0, 0, 0),
    }
    levels = [(e.side, e.price_e4, e.qty_e9, e.order_count) for e in ev if isinstance(e, BookLevelChanged)]
    assert levels == [
        ("buy", 99_0100, 0, 0),
        ("buy", 49_5000, 5 * SHARE, 1),
        ("sell", 100_0100, 0, 0),
        ("sell", 50_0100, 6 * SHARE, 1),
    ]
    book = feed.engine.book(SYM)
    assert book is not None
    assert (book.ref_price, book.best_bid(), book.best_ask()) == (50 * USD, 49_5000, 50_0100)
    # A new buy at the post-split price crosses and fills the adjusted quantity at the adjusted price.
    ev = feed(limit("b2", "buy", 6 * SHARE, 50_0100, acct="c2"))
    assert fills(ev) == [
        ("s1", 50_0100, 6 * SHARE, 0, "maker"),
        ("b2", 50_0100, 6 * SHARE, 0, "taker"),
    ]


def test_fractions_follow_the_order_rows_rules_and_zero_leaves_cancel() -> None:
    feed = Feed()
    feed(limit("s1", "sell", 10 * SHARE, 20 * USD, acct="mm"))
    feed(limit("b1", "buy", 4 * SHARE, 20 * USD, acct="c"))  # s1: cum 4, leaves 6
    feed(limit("s2", "sell", 3 * SHARE, 30 * USD, acct="x"))
    feed(limit("b2", "buy", 7 * SHARE, 10 * USD, acct="y"))  # a whole-share buy
    feed(limit("b3", "buy", 15 * SHARE // 2, 9 * USD, acct="z"))  # 7.5: a fractional buy
    ev = feed(split(1, 10))
    # Sells and whole-share buys round to whole shares (0.6, 0.3, 0.7 -> 0): canceled, in acceptance order.
    assert [
        (e.order_id, e.reason, e.cum_qty_e9, e.canceled_qty_e9) for e in ev if isinstance(e, OrderCanceled)
    ] == [
        ("s1", "split", 4 * SHARE, 6 * SHARE),
        ("s2", "split", 0, 3 * SHARE),
        ("b2", "split", 0, 7 * SHARE),
    ]
    assert adjusted(ev) == {"b3": (750_000_000, 750_000_000, 0, 90 * USD, 0, 0, 0)}  # to the 1e-9 quantum
    assert sorted(feed.engine.orders) == ["b3"]


def test_partially_filled_order_scales_cum_and_leaves() -> None:
    feed = Feed()
    feed(limit("s1", "sell", 10 * SHARE, 20 * USD, acct="mm"))
    feed(limit("b1", "buy", 4 * SHARE, 20 * USD, acct="c"))  # s1: cum 4, leaves 6
    ev = feed(split(3, 2))
    assert adjusted(ev) == {"s1": (15 * SHARE, 9 * SHARE, 6 * SHARE, 13_3400, 0, 0, 0)}
    o = feed.engine.orders["s1"]
    assert (o.qty, o.cum, o.leaves) == (15 * SHARE, 6 * SHARE, 9 * SHARE)


def test_stops_and_trailing_water_marks_scale() -> None:
    feed = Feed()
    feed(limit("s0", "sell", SHARE, 100 * USD, acct="mm"))
    feed(market("b0", "buy", SHARE, acct="t"))  # last = 100
    feed(
        NewOrder(order_id="st", account_id="c", symbol=SYM, side="buy", type="stop", tif="gtc",
                 qty_e9=SHARE, stop_price_e4=110_0100)
    )  # fmt: skip
    feed(
        NewOrder(order_id="sl", account_id="c", symbol=SYM, side="sell", type="stop_limit", tif="gtc",
                 qty_e9=2 * SHARE, stop_price_e4=90_0100, limit_price_e4=89_0100)
    )  # fmt: skip
    feed(
        NewOrder(order_id="tr", account_id="c", symbol=SYM, side="sell", type="trailing_stop", tif="gtc",
                 qty_e9=SHARE, trail_price_e4=5_0100)
    )  # fmt: skip
    ev = feed(split(2, 1))
    assert adjusted(ev) == {
        "st": (2 * SHARE, 2 * SHARE, 0, 0, 55_0100, 0, 0),  # buy stop up (55.005 -> 55.01)
        "sl": (4 * SHARE, 4 * SHARE, 0, 44_5100, 45_0000, 0, 0),  # sell: limit up, stop down
        "tr": (2 * SHARE, 2 * SHARE, 0, 0, 47_4900, 2_5000, 50 * USD),  # water 100 -> 50, trail down
    }
    book = feed.engine.book(SYM)
    assert book is not None
    assert book.last_price == 50 * USD
    # The buy stop triggers at the new price (>= 55.01) and not before.
    feed(limit("s1", "sell", SHARE, 55 * USD, acct="mm"))
    ev = feed(market("b1", "buy", SHARE, acct="t"))
    assert "OrderTriggered" not in kinds(ev)
    feed(limit("s2", "sell", 3 * SHARE, 55_0100, acct="mm"))
    ev = feed(market("b2", "buy", SHARE, acct="t"))
    assert kinds(ev).count("OrderTriggered") == 1
    assert [f for f in fills(ev) if f[0] == "st"] == [("st", 55_0100, 2 * SHARE, 0, "taker")]


def test_merged_levels_keep_time_priority_by_arrival() -> None:
    feed = Feed()
    feed(limit("a", "buy", SHARE, 100_0100, acct="c1"))  # arrival 1, better price
    feed(limit("b", "buy", SHARE, 100_0000, acct="c2"))  # arrival 2
    feed(limit("c", "buy", SHARE, 100_0100, acct="c3"))  # arrival 3
    feed(split(2, 1))  # 50.005 and 50.00 both round down to 50.00: one level
    book = feed.engine.book(SYM)
    assert book is not None
    assert book.level_orders(True) == [(50 * USD, ["a", "b", "c"])]
    assert book.depth(True) == [(50 * USD, 6 * SHARE, 3)]


def test_split_is_idempotent_by_split_id_and_other_symbols_are_untouched() -> None:
    feed = Feed()
    feed(limit("s1", "sell", SHARE, 100 * USD, acct="mm"))
    feed(limit("x1", "sell", SHARE, 100 * USD, acct="mm", symbol="OTHER"))
    first = feed(split(2, 1))
    before = feed.engine.state_hash()
    assert feed(split(2, 1)) == []
    assert feed.engine.state_hash() != before  # last_seq moved; the books did not
    assert feed.engine.orders["s1"].limit == 50 * USD
    assert feed.engine.orders["x1"].limit == 100 * USD
    assert feed.engine.splits == ["ca:1"]
    assert len(adjusted(first)) == 1


def test_snapshot_carries_applied_splits_and_restore_replays_identically() -> None:
    cmds = [
        limit("s1", "sell", 3 * SHARE, 100_0100, acct="mm"),
        limit("b1", "buy", 2 * SHARE, 99 * USD, acct="c"),
        split(3, 2),
        limit("b2", "buy", SHARE, 66_6800, acct="c2"),
        split(3, 2),  # redelivered
        CancelOrder(order_id="b1"),
    ]
    straight = Engine()
    events = [straight.apply(i, c) for i, c in enumerate(cmds)]
    plain = Engine()
    plain.apply(0, cmds[0])
    assert plain.snapshot()[:2] == b"\x95\x01"  # no split yet: the version-1 layout, 5 fields
    mid = Engine()
    for i, c in enumerate(cmds[:3]):
        mid.apply(i, c)
    snap = mid.snapshot()
    assert snap[:2] == b"\x96\x02"  # version 2: the applied split ids follow
    restored = Engine.restore(snap)
    assert restored.splits == ["ca:1"]
    replayed = [restored.apply(i, c) for i, c in enumerate(cmds) if i >= 2]
    assert replayed == [[], *events[3:]]
    assert restored.state_hash() == straight.state_hash()


def test_command_wire_form_and_validation() -> None:
    cmd = split(3, 2)
    assert decode_command(encode_command(cmd)) == cmd
    with pytest.raises(Exception, match="Expected `int` >= 1"):
        decode_command(
            b'{"command":"SplitApply","symbol":"X","split_id":"s","numerator":0,"denominator":1,"tick_e4":1}'
        )

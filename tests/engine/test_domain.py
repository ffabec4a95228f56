"""The engine's domain (engine.commands, ADR 0009): decoding bounds every int a command carries.

A command outside the domain never reaches either engine (the engine process dead-letters what does not decode),
so the native engine's i128 amounts hold every value the Python engine computes from decoded commands; inside it,
both engines agree (tests/engine/test_native_rust.py and the extremes below), and the engine stays total: a split
cancels the orders it would take beyond the domain, so every state snapshots (msgpack holds 64 bits). The API's
limits lie inside the domain, so no order it accepts is dead-lettered.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine import commands as ec
from engine.commands import NewOrder, decode_command
from engine.engine import Engine
from engine.events import OrderAdjusted, OrderCanceled, OrderFilled
from tests.engine.helpers import SHARE, SYM, limit, market
from tests.engine.test_native_rust import run_both

_ORDER = {
    "command": "NewOrder",
    "order_id": "o1",
    "account_id": "a",
    "symbol": "X",
    "side": "buy",
    "tif": "day",
}

# (command fields, the bounded field, its largest accepted magnitude)
BOUNDED: list[tuple[dict[str, Any], str, int]] = [
    ({**_ORDER, "type": "limit", "limit_price_e4": 100}, "qty_e9", ec.QTY_E9_MAX),
    ({**_ORDER, "type": "limit", "qty_e9": 1}, "limit_price_e4", ec.PRICE_E4_MAX),
    ({**_ORDER, "type": "stop", "qty_e9": 1}, "stop_price_e4", ec.PRICE_E4_MAX),
    ({**_ORDER, "type": "trailing_stop", "qty_e9": 1}, "trail_price_e4", ec.PRICE_E4_MAX),
    ({**_ORDER, "type": "trailing_stop", "qty_e9": 1}, "trail_percent_bps", ec.BPS_MAX),
    ({**_ORDER, "type": "market"}, "notional_e4", ec.NOTIONAL_E4_MAX),
    ({"command": "ReplaceOrder", "order_id": "o1", "new_order_id": "o2"}, "qty_e9", ec.QTY_E9_MAX),
    ({"command": "ReplaceOrder", "order_id": "o1", "new_order_id": "o2"}, "limit_price_e4", ec.PRICE_E4_MAX),
    ({"command": "SetReferencePrice", "symbol": "X"}, "price_e4", ec.PRICE_E4_MAX),
]


def _decode(fields: dict[str, Any]) -> ec.AnyCommand:
    return decode_command(msgspec.json.encode(fields))


@pytest.mark.parametrize(
    ("fields", "name", "bound"), BOUNDED, ids=[f"{f['command']}.{n}" for f, n, _ in BOUNDED]
)
def test_each_amount_decodes_up_to_its_bound_and_not_beyond(
    fields: dict[str, Any], name: str, bound: int
) -> None:
    for value in (bound, -bound, 0):  # zero and negatives stay: the engine rejects them with a reason
        assert getattr(_decode({**fields, name: value}), name) == value
    for value in (bound + 1, -bound - 1, 2**63, 2**64 + 5, 10**40):
        with pytest.raises(msgspec.ValidationError, match=name):
            _decode({**fields, name: value})


def test_legs_are_bounded_like_the_order() -> None:
    bracket = {**_ORDER, "type": "limit", "qty_e9": 1, "limit_price_e4": 100, "order_class": "bracket"}
    ok = {**bracket, "take_profit": {"limit_price_e4": ec.PRICE_E4_MAX}, "stop_loss": {"stop_price_e4": 1}}
    assert isinstance(_decode(ok), ec.NewOrder)
    for legs in (
        {"take_profit": {"limit_price_e4": ec.PRICE_E4_MAX + 1}, "stop_loss": {"stop_price_e4": 1}},
        {"take_profit": {"limit_price_e4": 200}, "stop_loss": {"stop_price_e4": 2**63}},
        {"take_profit": {"limit_price_e4": 200}, "stop_loss": {"stop_price_e4": 1, "limit_price_e4": 2**64}},
    ):
        with pytest.raises(msgspec.ValidationError):
            _decode({**bracket, **legs})


def test_split_terms_and_epochs_are_bounded() -> None:
    split = {
        "command": "SplitApply",
        "symbol": "X",
        "split_id": "s1",
        "numerator": 2,
        "denominator": 1,
        "tick_e4": 1,
    }
    assert isinstance(
        _decode({**split, "numerator": ec.SPLIT_TERM_MAX, "split_epoch": ec.EPOCH_MAX}), ec.SplitApply
    )
    for bad in (
        {"numerator": ec.SPLIT_TERM_MAX + 1},
        {"denominator": 0},
        {"tick_e4": ec.TICK_E4_MAX + 1},
        {"split_epoch": ec.EPOCH_MAX + 1},
        {"split_epoch": 0},
    ):
        with pytest.raises(msgspec.ValidationError):
            _decode({**split, **bad})
    with pytest.raises(msgspec.ValidationError):
        _decode({**_ORDER, "type": "market", "qty_e9": 1, "split_epoch": 2**63})


def test_the_apis_limits_are_inside_the_domain() -> None:
    from apps.orders import apis
    from engine import units

    assert units.qty_to_e9(apis.MAX_QTY) <= ec.QTY_E9_MAX
    assert units.price_to_e4(apis.MAX_PRICE) <= ec.PRICE_E4_MAX
    assert units.price_to_e4(apis.MAX_NOTIONAL) <= ec.NOTIONAL_E4_MAX


# ------------------------------------------------------------------ both engines at the domain's extremes
# Every command below decodes (it is inside the domain); the Python engine computes on unbounded ints, so the
# native one must give the same events and snapshots, not an OverflowError.

Q, P, N = ec.QTY_E9_MAX, ec.PRICE_E4_MAX, ec.NOTIONAL_E4_MAX


def _gtc(oid: str, side: str, qty: int, price: int, acct: str) -> ec.NewOrder:
    return limit(oid, side, qty, price, acct=acct, tif="gtc")


def _split(split_id: str, num: int, den: int) -> ec.SplitApply:
    return ec.SplitApply(SYM, split_id, num, den, 1)


def _decoded(cmds: list[ec.Command]) -> list[ec.Command]:
    """Each command as the engine process would see it: through the bounded decoder."""
    return [decode_command(ec.encode_command(c)) for c in cmds]


EXTREMES: dict[str, list[ec.Command]] = {
    # A notional buy of the largest notional at one tick sweeps 200 of the largest orders: its filled quantity
    # (2e19) is beyond 64 bits, and so are the level's totals.
    "notional sweep": [
        *(_gtc(f"s{i}", "sell", Q, 1, f"m{i}") for i in range(200)),
        market("b", "buy", None, acct="t", notional_e4=N),
    ],
    # 1000-for-1 twice on the largest resting orders: their quantities would be 1e20, so the first split cancels
    # them; prices floor at one tick.
    "forward splits": [
        _gtc("b1", "buy", Q, 2_000_000, "x"),
        _gtc("s1", "sell", Q, 3_000_000, "y"),
        ec.SetReferencePrice(SYM, 2_500_000),
        _split("f1", 1000, 1),
        _split("f2", 1000, 1),
        limit("t1", "buy", Q, P, acct="z", tif="ioc"),
        ec.SessionClose(),
    ],
    # 1-for-1000 twice on the highest prices: they would be 1e18, so the first split cancels the orders and caps
    # the last and reference prices at the top tick (stops and trails too).
    "reverse splits": [
        _gtc("s1", "sell", 1000 * SHARE, P, "x"),
        NewOrder("st", "y", SYM, "buy", "stop", "gtc", qty_e9=1000 * SHARE, stop_price_e4=P),
        NewOrder("tr", "z", SYM, "sell", "trailing_stop", "gtc", qty_e9=1000 * SHARE, trail_price_e4=P),
        limit("t0", "buy", SHARE, P, acct="w", tif="ioc"),  # a trade at the top price: last, water marks
        ec.SetReferencePrice(SYM, P),
        _split("r1", 1, 1000),
        _split("r2", 1, 1000),
        limit("t1", "buy", SHARE, P, acct="w", tif="ioc"),
    ],
    # Percent trailing stops with water marks at the top price, buy and sell, through two reverse splits (canceled
    # at the first), then trades at the capped prices; a notional sell on the book.
    "trailing percent after reverse splits": [
        _gtc("b1", "buy", 1000 * SHARE, P, "x"),
        _gtc("s1", "sell", 1000 * SHARE, P, "y"),
        NewOrder(
            "ts", "z", SYM, "sell", "trailing_stop", "gtc", qty_e9=1000 * SHARE, trail_percent_bps=9_999
        ),
        NewOrder("tb", "w", SYM, "buy", "trailing_stop", "gtc", qty_e9=1000 * SHARE, trail_percent_bps=1),
        ec.SetReferencePrice(SYM, P),
        _split("r1", 1, 1000),
        _split("r2", 1, 1000),
        limit("t1", "buy", SHARE, P, acct="v", tif="ioc"),
        limit("t2", "sell", SHARE, 1, acct="v", tif="ioc"),
        market("t3", "sell", None, acct="u", notional_e4=N),
    ],
    # fok and the auction sum the largest quantities over many orders.
    "fok and auction sums": [
        *(_gtc(f"s{i}", "sell", Q, 10 + i, f"m{i}") for i in range(120)),
        NewOrder("f", "t", SYM, "buy", "limit", "fok", qty_e9=Q, limit_price_e4=P),
        *(
            NewOrder(f"o{i}", f"a{i}", SYM, "buy", "limit", "opg", qty_e9=Q, limit_price_e4=P)
            for i in range(120)
        ),
        *(NewOrder(f"p{i}", f"c{i}", SYM, "sell", "market", "opg", qty_e9=Q) for i in range(110)),
        ec.SessionOpen(),
    ],
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_both_engines_agree_at_the_domains_extremes(name: str) -> None:
    run_both(_decoded(EXTREMES[name]), restore_at=len(EXTREMES[name]) // 2, snapshot_every=5, views=True)


def test_a_notional_order_fills_at_most_the_domains_largest_quantity() -> None:
    # At one tick the largest notional would buy 1e24 units; its filled quantity stops at QTY_E9_MAX (the order is
    # then filled), so every amount stays within what events and snapshots encode.
    py, rs = run_both(_decoded(EXTREMES["notional sweep"]), snapshot_every=1)
    assert rs.snapshot() == py.snapshot()  # encodes: no amount beyond 64 bits
    engine = Engine()
    fills: list[OrderFilled] = []
    for seq, cmd in enumerate(_decoded(EXTREMES["notional sweep"]), start=1):
        fills += [e for e in engine.apply(seq, cmd) if isinstance(e, OrderFilled) and e.order_id == "b"]
    assert fills[-1].cum_qty_e9 == Q
    assert sum(f.qty_e9 for f in fills) == Q
    assert "b" not in engine.orders  # filled, not canceled: the liquidity left was not needed
    assert len(engine.orders) == 200 - 1  # one maker order of Q was taken, 199 rest


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_every_state_at_the_extremes_snapshots(name: str) -> None:
    # The engine is total inside the domain: after every command its state encodes (no amount beyond 64 bits)
    # and restores to the same state.
    engine = Engine()
    for seq, cmd in enumerate(_decoded(EXTREMES[name]), start=1):
        engine.apply(seq, cmd)
        assert Engine.restore(engine.snapshot()).state_hash() == engine.state_hash(), f"after seq {seq}"


def _split_outcome(cmds: list[ec.Command]) -> tuple[dict[str, str], dict[str, OrderAdjusted], Engine]:
    py, _rs = run_both(
        _decoded(cmds), snapshot_every=1, views=True
    )  # the native engine agrees, event for event
    engine = Engine()
    canceled: dict[str, str] = {}
    adjusted: dict[str, OrderAdjusted] = {}
    for seq, cmd in enumerate(_decoded(cmds), start=1):
        for event in engine.apply(seq, cmd):
            if isinstance(event, OrderCanceled):
                canceled[event.order_id] = event.reason
            elif isinstance(event, OrderAdjusted):
                adjusted[event.order_id] = event
    assert engine.snapshot() == py.snapshot()
    return canceled, adjusted, engine


def test_a_forward_split_cancels_the_orders_it_would_take_beyond_the_largest_quantity() -> None:
    canceled, adjusted, _ = _split_outcome(
        [
            _gtc("over", "buy", Q // 1000 + SHARE, 2_000_000, "x"),  # 1000x: a share beyond the bound
            _gtc("at", "buy", Q // 1000, 2_000_000, "y"),  # 1000x: exactly the bound
            _gtc("part", "sell", Q // 1000, 3_000_000, "z"),
            limit(
                "t", "buy", SHARE, 3_000_000, acct="w", tif="ioc"
            ),  # part: cum 1 share, leaves below Q/1000
            _split("f1", 1000, 1),
        ]
    )
    assert canceled == {"over": "split"}
    assert adjusted["at"].qty_e9 == Q
    assert (adjusted["part"].qty_e9, adjusted["part"].cum_qty_e9) == (Q, 1000 * SHARE)


def test_a_reverse_split_cancels_the_orders_it_would_price_beyond_the_domain_and_caps_the_book() -> None:
    top = P // 1000
    canceled, adjusted, engine = _split_outcome(
        [
            _gtc("over", "sell", 1000 * SHARE, top + 1, "x"),
            _gtc("at", "sell", 1000 * SHARE, top, "y"),
            NewOrder("stop", "z", SYM, "buy", "stop", "gtc", qty_e9=1000 * SHARE, stop_price_e4=top + 1),
            NewOrder(
                "trail", "v", SYM, "sell", "trailing_stop", "gtc", qty_e9=1000 * SHARE, trail_price_e4=top
            ),
            _gtc("b", "buy", 1000 * SHARE, top - 1, "u"),
            ec.SetReferencePrice(SYM, P),
            _split("r1", 1, 1000),
        ]
    )
    assert canceled == {"over": "split", "stop": "split"}
    assert adjusted["at"].limit_price_e4 == P
    assert adjusted["trail"].trail_price_e4 == P
    book = engine.book(SYM)
    assert book is not None
    assert book.ref_price == P  # capped at the domain's top tick

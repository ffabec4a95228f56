"""The engine's domain (engine.commands, ADR 0009): decoding bounds every int a command carries.

A command outside the domain never reaches either engine (the engine process dead-letters what does not decode),
so the native engine's 64-bit fields hold every value the Python engine could compute from a decoded command;
inside it, both engines agree (tests/engine/test_native_rust.py and the extremes below). The API's limits lie
inside the domain, so no order it accepts is dead-lettered.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine import commands as ec
from engine.commands import decode_command

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

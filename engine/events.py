"""Engine output events: immutable, past tense, one list per applied command.

Invariants:
- Every event carries ``symbol``, ``book_seq`` (per-symbol, strictly increasing by 1, gap-free across the
  whole life of the book including recovery) and ``seq`` (the input position of the command that caused it).
- ``trade_id`` = ``f"{seq}:{n}"`` where ``n`` counts matches within that command (cascaded stop triggers
  included); ``fill_id`` = ``f"{trade_id}:b"`` / ``f"{trade_id}:s"``. Replaying a command therefore never
  creates a new id for an old fill.
- Quantities are ``qty_e9``, prices ``price_e4``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

CancelReason = Literal[
    "user",
    "ioc_remainder",
    "fok_unfilled",
    "self_trade",
    "oco_sibling",
    "market_no_liquidity",
    "halted",
    "parent_canceled",
    "auction_unfilled",
    "split",
]

RejectReason = Literal[
    "halted",
    "invalid_quantity",
    "invalid_price",
    "invalid_order",
    "duplicate_order_id",
    "unknown_order",
    "not_replaceable",
    "auction_closed",
]


class Event(msgspec.Struct, frozen=True, tag_field="event", tag=True, gc=False):
    symbol: str
    book_seq: int
    seq: int


class OrderAccepted(Event, frozen=True, gc=False):
    order_id: str
    account_id: str
    side: str
    type: str
    tif: str
    qty_e9: int
    notional_e4: int
    limit_price_e4: int
    stop_price_e4: int
    parent_order_id: str


class OrderRejected(Event, frozen=True, gc=False):
    order_id: str
    reason: str


class OrderFilled(Event, frozen=True, gc=False):
    order_id: str
    account_id: str
    side: str
    fill_id: str
    trade_id: str
    price_e4: int
    qty_e9: int
    leaves_qty_e9: int
    cum_qty_e9: int
    liquidity: str  # "maker" | "taker"


class TradeExecuted(Event, frozen=True, gc=False):
    trade_id: str
    price_e4: int
    qty_e9: int
    buy_order_id: str
    sell_order_id: str
    aggressor: str  # "buy" | "sell" | "auction"


class OrderCanceled(Event, frozen=True, gc=False):
    order_id: str
    reason: str
    cum_qty_e9: int
    canceled_qty_e9: int


class OrderExpired(Event, frozen=True, gc=False):
    order_id: str
    cum_qty_e9: int
    expired_qty_e9: int


class OrderReplaced(Event, frozen=True, gc=False):
    order_id: str
    new_order_id: str
    cum_qty_e9: int


class OrderTriggered(Event, frozen=True, gc=False):
    """``water_e4``: a trailing stop's high (sell) / low (buy) water mark when it fired; 0 for other stops
    (the default also decodes events recorded before the field existed)."""

    order_id: str
    new_type: str  # "market" | "limit"
    stop_price_e4: int
    water_e4: int = 0


class OrderActivated(Event, frozen=True, gc=False):
    """A held child leg (bracket/OTO) became live with ``qty_e9`` = the parent's filled quantity."""

    order_id: str
    parent_order_id: str
    qty_e9: int


class SplitApplied(Event, frozen=True, gc=False):
    """``SplitApply`` took effect on the book: its ``OrderAdjusted`` (and ``split`` cancels) follow."""

    split_id: str
    numerator: int
    denominator: int
    tick_e4: int


class OrderAdjusted(Event, frozen=True, gc=False):
    """A live order on post-split terms (0 = the order has no such price / no water mark yet)."""

    order_id: str
    account_id: str
    split_id: str
    qty_e9: int
    leaves_qty_e9: int
    cum_qty_e9: int
    limit_price_e4: int
    stop_price_e4: int
    trail_price_e4: int
    water_e4: int


class BookLevelChanged(Event, frozen=True, gc=False):
    side: str
    price_e4: int
    qty_e9: int
    order_count: int


class SessionChanged(Event, frozen=True, gc=False):
    phase: str  # "open" | "closed" | "halted" | "resumed"


AnyEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | TradeExecuted
    | OrderCanceled
    | OrderExpired
    | OrderReplaced
    | OrderTriggered
    | OrderActivated
    | BookLevelChanged
    | SessionChanged
    | SplitApplied
    | OrderAdjusted
)

_json_encoder = msgspec.json.Encoder()
_json_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _json_encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    return _json_decoder.decode(data)

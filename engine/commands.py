"""Engine input commands: immutable msgspec Structs, decoded from the partition's command topic.

Invariants:
- All prices are int ``price_e4`` (1e-4 USD), quantities int ``qty_e9`` (1e-9 share), notionals int
  ``notional_e4`` (1e-4 USD), percentages int basis points. No floats, no Decimals inside the engine.
- Commands carry no position: ``Engine.apply(seq, command)`` receives the Kafka offset separately, and every
  id the engine derives (fill, trade, leg) depends only on ``seq`` and the command content.
- The wire form is a tagged msgpack/JSON union (``type`` = class name); ``decode_command`` validates types.
- Decoding bounds every int (``Qty``, ``Price``, ``Notional``, ``Bps``, ``SplitTerm``, ``Epoch``): the engine's
  domain, wide enough for any order the API accepts (``apps.orders.apis`` MAX_QTY, MAX_PRICE, MAX_NOTIONAL are
  inside it) and narrow enough that the native engine reads every field as a 64-bit int and holds every amount
  the Python engine derives from it in 128 bits (ADR 0009). A command outside it is dead-lettered by the engine
  process, never applied. Zero and negative amounts stay inside it: the engine rejects those itself
  (``invalid_quantity``, ``invalid_price``).
- ``split_epoch`` (order commands and ``SplitApply``) is the symbol's split counter (``Asset.split_epoch``) as
  the producer saw it in the order's transaction; None (older producers) = not checked. The engine rejects an
  order command whose epoch differs from the symbol's (``split_epoch_stale`` / ``split_epoch_ahead``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit", "trailing_stop"]
TimeInForce = Literal["day", "gtc", "ioc", "fok", "opg", "cls"]
OrderClass = Literal["simple", "bracket", "oco", "oto"]

QTY_E9_MAX = 10**17  # 1e8 shares: room for splits up to 92-for-1 within a 64-bit quantity
PRICE_E4_MAX = 10**15  # $1e11 a share
NOTIONAL_E4_MAX = 10**15  # $1e11
BPS_MAX = 10**6
SPLIT_TERM_MAX = 1_000  # numerator, denominator (a 1000-for-1 split or a 1-for-1000 reverse split at most)
TICK_E4_MAX = 10**6  # $100
EPOCH_MAX = 10**9

Qty = Annotated[int, msgspec.Meta(ge=-QTY_E9_MAX, le=QTY_E9_MAX)]
Price = Annotated[int, msgspec.Meta(ge=-PRICE_E4_MAX, le=PRICE_E4_MAX)]
Notional = Annotated[int, msgspec.Meta(ge=-NOTIONAL_E4_MAX, le=NOTIONAL_E4_MAX)]
Bps = Annotated[int, msgspec.Meta(ge=-BPS_MAX, le=BPS_MAX)]


class TakeProfit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Take-profit leg: a limit order on the exit side."""

    limit_price_e4: Price


class StopLoss(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Stop-loss leg: a stop (or stop-limit when ``limit_price_e4`` is set) on the exit side."""

    stop_price_e4: Price
    limit_price_e4: Price | None = None


SplitTerm = Annotated[int, msgspec.Meta(gt=0, le=SPLIT_TERM_MAX)]
Tick = Annotated[int, msgspec.Meta(gt=0, le=TICK_E4_MAX)]
Epoch = Annotated[int, msgspec.Meta(ge=0, le=EPOCH_MAX)]
PositiveEpoch = Annotated[int, msgspec.Meta(gt=0, le=EPOCH_MAX)]


class Command(msgspec.Struct, frozen=True, tag_field="command", tag=True, forbid_unknown_fields=True):
    """Base of every engine command."""


class NewOrder(Command, frozen=True):
    """Submit an order. Exactly one of ``qty_e9`` / ``notional_e4`` (notional: market orders only)."""

    order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    tif: TimeInForce
    qty_e9: Qty | None = None
    notional_e4: Notional | None = None
    limit_price_e4: Price | None = None
    stop_price_e4: Price | None = None
    trail_price_e4: Price | None = None
    trail_percent_bps: Bps | None = None
    extended_hours: bool = False
    order_class: OrderClass = "simple"
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    split_epoch: Epoch | None = None  # the symbol's split counter the order was priced under


class CancelOrder(Command, frozen=True):
    order_id: str


class ReplaceOrder(Command, frozen=True):
    """Cancel ``order_id`` and submit ``new_order_id`` with the given fields changed (None = keep)."""

    order_id: str
    new_order_id: str
    qty_e9: Qty | None = None
    limit_price_e4: Price | None = None
    stop_price_e4: Price | None = None
    trail_price_e4: Price | None = None
    trail_percent_bps: Bps | None = None
    tif: TimeInForce | None = None
    split_epoch: Epoch | None = None  # the symbol's split counter the new terms were priced under


class SessionOpen(Command, frozen=True):
    """Start the regular session for every book of the partition: uncross the opening (opg) auction."""


class SessionClose(Command, frozen=True):
    """End the regular session: uncross the closing (cls) auction, then expire every day order."""


class Halt(Command, frozen=True):
    symbol: str


class Resume(Command, frozen=True):
    symbol: str


class SetReferencePrice(Command, frozen=True):
    symbol: str
    price_e4: Price


class SplitApply(Command, frozen=True):
    """Put every live order of ``symbol`` on the terms of a ``numerator``-for-``denominator`` split, once.

    Idempotent by ``split_id`` (the engine remembers applied ids in its snapshot). ``tick_e4`` is the
    symbol's tick: adjusted prices are rounded to it, never below one tick. Decoding refuses non-positive
    terms (such a command is dead-lettered, never applied). ``split_epoch`` is the symbol's split counter
    after this split (``Asset.split_epoch``, incremented in the split's transaction); the engine takes it as
    the symbol's epoch. None (older producers) leaves the symbol's epoch unchanged.
    """

    symbol: str
    split_id: str
    numerator: SplitTerm
    denominator: SplitTerm
    tick_e4: Tick
    split_epoch: PositiveEpoch | None = None


AnyCommand = (
    NewOrder
    | CancelOrder
    | ReplaceOrder
    | SessionOpen
    | SessionClose
    | Halt
    | Resume
    | SetReferencePrice
    | SplitApply
)

_json_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)
_msgpack_decoder: msgspec.msgpack.Decoder[AnyCommand] = msgspec.msgpack.Decoder(AnyCommand)
_json_encoder = msgspec.json.Encoder()


def decode_command(data: bytes) -> AnyCommand:
    """Decode a JSON command (validated; raises ``msgspec.ValidationError`` on bad input)."""
    return _json_decoder.decode(data)


def decode_command_msgpack(data: bytes) -> AnyCommand:
    return _msgpack_decoder.decode(data)


def encode_command(command: Command) -> bytes:
    return _json_encoder.encode(command)

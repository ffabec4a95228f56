"""Alpaca market-data v2 shapes (REST and stream) built from exact engine integers.

Invariants: prices and sizes leave as decimal strings (``format_decimal``), never floats; timestamps are
RFC 3339 UTC with a ``Z``. The stream adds ``seq`` (per channel and symbol) to Alpaca's message shapes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from apps.core.fields import format_decimal

EXCHANGE = "BRK"  # our own venue code; alpaca-py accepts any string here
TAPE = "C"
TIMEFRAMES: dict[str, timedelta] = {
    "1Min": timedelta(minutes=1),
    "5Min": timedelta(minutes=5),
    "15Min": timedelta(minutes=15),
    "1Hour": timedelta(hours=1),
    "1Day": timedelta(days=1),
}
TIMEFRAME_ALIASES = {"1T": "1Min", "5T": "5Min", "15T": "15Min", "1H": "1Hour", "1D": "1Day"}
NEW_YORK = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def price(price_e4: int) -> Decimal:
    return Decimal(price_e4).scaleb(-4)


def qty(qty_e9: int) -> Decimal:
    return Decimal(qty_e9).scaleb(-9)


def dec(value: Decimal) -> str:
    return format_decimal(value)


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def bucket_start(timeframe: str, ts: datetime) -> datetime:
    """Start of the bar containing ``ts``: epoch-aligned for intraday frames, New York midnight for 1Day."""
    if timeframe == "1Day":
        local = ts.astimezone(NEW_YORK)
        return datetime(local.year, local.month, local.day, tzinfo=NEW_YORK).astimezone(UTC)
    step = TIMEFRAMES[timeframe]
    return ts - (ts - _EPOCH) % step


def trade_numeric_id(trade_id: str, book_seq: int) -> int:
    """Alpaca's integer ``i``: ``seq * 10**6 + n`` from the engine's ``"{seq}:{n}"`` trade id."""
    head, _, tail = trade_id.partition(":")
    if head.isdigit() and tail.isdigit():
        return int(head) * 1_000_000 + int(tail)
    return book_seq


def trade_data(
    *, trade_id: str, price_e4: int, qty_e9: int, timestamp: datetime, book_seq: int
) -> dict[str, Any]:
    return {
        "t": rfc3339(timestamp),
        "x": EXCHANGE,
        "p": dec(price(price_e4)),
        "s": dec(qty(qty_e9)),
        "c": ["@"],
        "i": trade_numeric_id(trade_id, book_seq),
        "z": TAPE,
        "trade_id": trade_id,
        "book_seq": book_seq,
    }


def quote_data(
    *, bid: tuple[int, int] | None, ask: tuple[int, int] | None, timestamp: datetime, book_seq: int
) -> dict[str, Any]:
    """Top of book; an empty side is price 0 size 0 (as Alpaca reports a missing side)."""
    bp, bs = bid or (0, 0)
    ap, as_ = ask or (0, 0)
    return {
        "t": rfc3339(timestamp),
        "bx": EXCHANGE if bid else "",
        "bp": dec(price(bp)),
        "bs": dec(qty(bs)),
        "ax": EXCHANGE if ask else "",
        "ap": dec(price(ap)),
        "as": dec(qty(as_)),
        "c": ["R"],
        "z": TAPE,
        "book_seq": book_seq,
    }


def bar_data(
    *,
    timestamp: datetime,
    open_: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
    trade_count: int,
    vwap: Decimal,
) -> dict[str, Any]:
    return {
        "t": rfc3339(timestamp),
        "o": dec(open_),
        "h": dec(high),
        "l": dec(low),
        "c": dec(close),
        "v": dec(volume),
        "n": trade_count,
        "vw": dec(vwap),
    }


def level(price_e4: int, qty_e9: int) -> dict[str, str]:
    return {"p": dec(price(price_e4)), "s": dec(qty(qty_e9))}

"""Market data writes: engine trades and book changes into PostgreSQL history and the Redis cache.

Invariants:
- Single writer per symbol (the consumer of the symbol's partition), so reading the book sides to derive the
  quote after a level change is race-free; every Redis write is still compare-and-set on ``book_seq``.
- A trade is inserted once (``ON CONFLICT DO NOTHING`` on ``(symbol, trade_id)``); only a newly inserted trade
  is added to its five bars, in the same transaction, so PostgreSQL bars are exact under any redelivery.
- Redis bars are copies of the PostgreSQL rows returned by that upsert, so cache and history cannot disagree.
- Fan-out happens on commit and only for updates Redis accepted (a replay publishes nothing).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, transaction

from apps.marketdata import cache, shapes
from apps.marketdata.models import vwap
from apps.marketdata.stream import Update, publish

_TRADE_INSERT = """
INSERT INTO marketdata_trade (symbol, trade_id, price, size, timestamp, book_seq, aggressor)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (symbol, trade_id) DO NOTHING
RETURNING id
"""

_BAR_UPSERT = """
INSERT INTO marketdata_bar AS b (symbol, timeframe, timestamp, open, high, low, close, volume, trade_count,
                                 notional, open_seq, close_seq)
VALUES {values}
ON CONFLICT (symbol, timeframe, timestamp) DO UPDATE SET
  open = CASE WHEN EXCLUDED.open_seq < b.open_seq THEN EXCLUDED.open ELSE b.open END,
  open_seq = LEAST(b.open_seq, EXCLUDED.open_seq),
  high = GREATEST(b.high, EXCLUDED.high),
  low = LEAST(b.low, EXCLUDED.low),
  close = CASE WHEN EXCLUDED.close_seq > b.close_seq THEN EXCLUDED.close ELSE b.close END,
  close_seq = GREATEST(b.close_seq, EXCLUDED.close_seq),
  volume = b.volume + EXCLUDED.volume,
  trade_count = b.trade_count + 1,
  notional = b.notional + EXCLUDED.notional
RETURNING timeframe, timestamp, open, high, low, close, volume, trade_count, notional
"""


def _on_commit_publish(updates: list[Update]) -> None:
    if updates:
        transaction.on_commit(lambda: publish(updates))


def trade_record(
    *,
    symbol: str,
    trade_id: str,
    price_e4: int,
    qty_e9: int,
    book_seq: int,
    timestamp: datetime,
    aggressor: str = "",
) -> list[Update]:
    """Persist one engine trade, fold it into its bars, refresh the Redis trade and bars; fan out on commit."""
    price, size = shapes.price(price_e4), shapes.qty(qty_e9)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(_TRADE_INSERT, [symbol, trade_id, price, size, timestamp, book_seq, aggressor])
            inserted = cur.fetchone() is not None
            bars: list[tuple[Any, ...]] = []
            if inserted:
                rows: list[Any] = []
                for tf in shapes.TIMEFRAMES:
                    start = shapes.bucket_start(tf, timestamp)
                    rows += [symbol, tf, start, price, price, price, price, size, 1, price * size]
                    rows += [book_seq, book_seq]
                values = ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"] * len(shapes.TIMEFRAMES))
                cur.execute(_BAR_UPSERT.format(values=values), rows)
                bars = list(cur.fetchall())
        updates = _trade_cache(
            symbol=symbol,
            trade=shapes.trade_data(
                trade_id=trade_id, price_e4=price_e4, qty_e9=qty_e9, timestamp=timestamp, book_seq=book_seq
            ),
            book_seq=book_seq,
            bars=bars,
        )
        _on_commit_publish(updates)
    return updates


def _trade_cache(
    *, symbol: str, trade: dict[str, Any], book_seq: int, bars: list[tuple[Any, ...]]
) -> list[Update]:
    updates: list[Update] = []
    cseq = cache.cas_set(cache.trade_key(symbol), seq=book_seq, data=orjson.dumps(trade))
    if cseq:
        updates.append(Update("t", symbol, {"T": "t", "S": symbol, **trade, "seq": cseq}))
    for tf, start, o, h, low, c, v, n, notional in bars:
        data = shapes.bar_data(
            timestamp=start,
            open_=o,
            high=h,
            low=low,
            close=c,
            volume=v,
            trade_count=n,
            vwap=vwap(notional, v),
        )
        prev = cache.prev_daily_bar_key(symbol) if tf == "1Day" else ""
        cseq = cache.bar_set(
            cache.bar_key(symbol, tf), prev_key=prev, seq=book_seq, data=orjson.dumps(data), bucket=data["t"]
        )
        if cseq and tf == "1Min":
            updates.append(Update("b", symbol, {"T": "b", "S": symbol, **data, "seq": cseq}))
    return updates


def _decode_level(raw: bytes) -> tuple[int, int]:
    qty_e9, _, count = raw.partition(b":")
    return int(qty_e9), int(count or 0)


def book_sides(symbol: str) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]], int, int]:
    """(bids, asks, book_seq, channel seq) read atomically: price_e4 -> (qty_e9, order_count)."""

    def read(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=True)
        pipe.hgetall(cache.book_side_key(symbol, "buy"))
        pipe.hgetall(cache.book_side_key(symbol, "sell"))
        pipe.hmget(cache.book_key(symbol), ["seq", "cseq"])
        return list(pipe.execute())

    bids_raw, asks_raw, (seq, cseq) = cache.guarded(read)
    bids = {int(p): _decode_level(v) for p, v in bids_raw.items()}
    asks = {int(p): _decode_level(v) for p, v in asks_raw.items()}
    return bids, asks, int(seq or 0), int(cseq or 0)


def book_level_apply(
    *,
    symbol: str,
    side: str,
    price_e4: int,
    qty_e9: int,
    order_count: int,
    book_seq: int,
    timestamp: datetime,
) -> list[Update]:
    """Set one aggregated L2 level (qty 0 removes it), then re-derive the quote; fan out on commit."""
    level = "" if qty_e9 == 0 else f"{qty_e9}:{order_count}"
    cseq = cache.book_apply(symbol, side=side, seq=book_seq, price_e4=price_e4, level=level)
    if not cseq:
        return []
    book_side = "b" if side == "buy" else "a"
    updates = [
        Update(
            "o",
            symbol,
            {
                "T": "o",
                "S": symbol,
                "t": shapes.rfc3339(timestamp),
                book_side: [shapes.level(price_e4, qty_e9)],
                "book_seq": book_seq,
                "seq": cseq,
            },
        )
    ]
    updates += _quote_refresh(symbol=symbol, book_seq=book_seq, timestamp=timestamp)
    _on_commit_publish(updates)
    return updates


def _quote_refresh(*, symbol: str, book_seq: int, timestamp: datetime) -> list[Update]:
    bids, asks, _, _ = book_sides(symbol)
    bid = (max(bids), bids[max(bids)][0]) if bids else None
    ask = (min(asks), asks[min(asks)][0]) if asks else None
    quote = shapes.quote_data(bid=bid, ask=ask, timestamp=timestamp, book_seq=book_seq)
    current = cache.guarded(lambda r: r.hget(cache.quote_key(symbol), "data"))
    if current is not None:
        old = orjson.loads(current)
        if all(old.get(k) == quote[k] for k in ("bp", "bs", "ap", "as")):
            return []  # top of book unchanged: no new quote
    cseq = cache.cas_set(cache.quote_key(symbol), seq=book_seq, data=orjson.dumps(quote))
    if not cseq:
        return []
    return [Update("q", symbol, {"T": "q", "S": symbol, **quote, "seq": cseq})]


def reference_price_set(*, symbol: str, price: Decimal, update_asset: bool = True) -> None:
    """Publish the demo reference price to Redis (``md:{symbol}:ref``) and ``Asset.reference_price``."""
    cache.guarded(lambda r: r.set(cache.ref_key(symbol), shapes.dec(price)))
    if update_asset:
        # apps.orders has no service for this yet; a single-column UPDATE touches nothing else of the asset.
        from apps.orders.models import Asset

        Asset.objects.filter(symbol=symbol).update(reference_price=price)

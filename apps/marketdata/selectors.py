"""Market data reads: Redis first (never PostgreSQL for what Redis answers), PostgreSQL for history.

- ``latest_trade``: Redis; on a miss or with Redis down, the newest ``Trade`` row (trades are history).
- ``latest_quote`` / ``orderbook`` / ``snapshot``: Redis only (the book is not stored in PostgreSQL), so with
  Redis down they raise ``RedisUnavailable`` and the API answers 503 ``marketdata_cache_unavailable``.
- ``bars_page``: PostgreSQL (every bar, the current one included, is upserted there per trade).
- ``reference_price``: Redis ``md:{symbol}:ref``, else ``Asset.reference_price``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db.models import Q

from apps.marketdata import cache, shapes
from apps.marketdata.cache import RedisUnavailable
from apps.marketdata.models import Bar, Trade
from apps.marketdata.services import book_sides


def _cached(key: str) -> dict[str, Any] | None:
    raw = cache.guarded(lambda r: r.hget(key, "data"))
    return None if raw is None else dict(orjson.loads(raw))


def _trade_from_row(row: Trade) -> dict[str, Any]:
    return shapes.trade_data(
        trade_id=row.trade_id,
        price_e4=int(row.price.scaleb(4)),
        qty_e9=int(row.size.scaleb(9)),
        timestamp=row.timestamp,
        book_seq=row.book_seq,
    )


def latest_trade(symbol: str) -> dict[str, Any] | None:
    try:
        cached = _cached(cache.trade_key(symbol))
    except RedisUnavailable:
        cached = None
    if cached is not None:
        return cached
    row = Trade.objects.filter(symbol=symbol).order_by("-book_seq").first()
    return None if row is None else _trade_from_row(row)


def latest_quote(symbol: str) -> dict[str, Any] | None:
    return _cached(cache.quote_key(symbol))


def orderbook(symbol: str, depth: int | None = None) -> dict[str, Any]:
    """Aggregated L2, best first, with the ``book_seq`` it reflects and the stream's ``seq`` for ``o``."""
    bids, asks, book_seq, cseq = book_sides(symbol)
    bid_prices = sorted(bids, reverse=True)[:depth]
    ask_prices = sorted(asks)[:depth]
    return {
        "b": [shapes.level(p, bids[p][0]) | {"n": bids[p][1]} for p in bid_prices],
        "a": [shapes.level(p, asks[p][0]) | {"n": asks[p][1]} for p in ask_prices],
        "book_seq": book_seq,
        "seq": cseq,
    }


def stream_seq(channel: str, symbol: str) -> int:
    key = {"t": cache.trade_key, "q": cache.quote_key, "o": cache.book_key}.get(channel)
    raw = cache.guarded(lambda r: r.hget(key(symbol) if key else cache.bar_key(symbol, "1Min"), "cseq"))
    return int(raw or 0)


def snapshot(symbol: str) -> dict[str, Any] | None:
    def read(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        pipe.hget(cache.trade_key(symbol), "data")
        pipe.hget(cache.quote_key(symbol), "data")
        pipe.hget(cache.bar_key(symbol, "1Min"), "data")
        pipe.hget(cache.bar_key(symbol, "1Day"), "data")
        pipe.get(cache.prev_daily_bar_key(symbol))
        return list(pipe.execute())

    raw = cache.guarded(read)
    if all(v is None for v in raw):
        return None
    names = ("latestTrade", "latestQuote", "minuteBar", "dailyBar", "prevDailyBar")
    return {name: (None if v is None else orjson.loads(v)) for name, v in zip(names, raw, strict=True)}


@dataclass(frozen=True, slots=True)
class BarsPage:
    bars: dict[str, list[dict[str, Any]]]
    next_page_token: str | None


def _token_encode(symbol: str, ts: datetime) -> str:
    return base64.urlsafe_b64encode(f"{symbol}|{ts.isoformat()}".encode()).decode()


def token_decode(token: str) -> tuple[str, datetime]:
    """Raises ``ValueError`` for a token we did not issue."""
    try:
        symbol, _, ts = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(ts)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid page_token") from exc
    if not symbol or parsed.tzinfo is None:
        raise ValueError("invalid page_token")
    return symbol, parsed


def bars_page(
    *,
    symbols: list[str],
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    page_token: str | None = None,
    descending: bool = False,
) -> BarsPage:
    """Bars ordered by (symbol, time), ``limit`` in total across symbols, keyset-paginated by ``page_token``."""
    qs = Bar.objects.filter(symbol__in=symbols, timeframe=timeframe)
    if start is not None:
        qs = qs.filter(timestamp__gte=start)
    if end is not None:
        qs = qs.filter(timestamp__lte=end)
    if page_token:
        sym, ts = token_decode(page_token)
        after = Q(timestamp__lt=ts) if descending else Q(timestamp__gt=ts)
        qs = qs.filter(Q(symbol__gt=sym) | (Q(symbol=sym) & after))
    qs = qs.order_by("symbol", "-timestamp" if descending else "timestamp")
    rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    out: dict[str, list[dict[str, Any]]] = {}
    for bar in rows:
        out.setdefault(bar.symbol, []).append(
            shapes.bar_data(
                timestamp=bar.timestamp,
                open_=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                trade_count=bar.trade_count,
                vwap=bar.vwap,
            )
        )
    token = _token_encode(rows[-1].symbol, rows[-1].timestamp) if more and rows else None
    return BarsPage(bars=out, next_page_token=token)


def latest_bar(symbol: str) -> dict[str, Any] | None:
    return _cached(cache.bar_key(symbol, "1Min"))


def reference_price(symbol: str) -> Decimal | None:
    """The demo reference price for the orders risk collar: Redis, else ``Asset.reference_price``."""
    try:
        raw = cache.guarded(lambda r: r.get(cache.ref_key(symbol)))
    except RedisUnavailable:
        raw = None
    if raw is not None:
        return Decimal(raw.decode() if isinstance(raw, bytes) else raw)
    from apps.orders.models import Asset  # read-only: orders has no selector for this yet

    value = Asset.objects.filter(symbol=symbol).values_list("reference_price", flat=True).first()
    return value

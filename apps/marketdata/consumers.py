"""Kafka consumer ``marketdata``: engine trades and L2 changes into Redis, PostgreSQL history and the stream.

Registered with ``apps.core.consumers`` (``manage.py run_consumer marketdata``), mode inline, on
``marketdata.trades`` and ``marketdata.book`` (key = symbol, so one consumer is the single writer per symbol).

Payload contract (docs/interfaces.md, apps.orders Engine): the engine event as builtins with ``symbol`` and
``book_seq``; every ``*_e4``/``*_e9`` integer also as an exact decimal string without the suffix. The integers
are canonical here; the strings are used only when an integer is absent. ``timestamp`` (RFC 3339) if present,
else the envelope's ``occurred_at``, is the print time.

Redis being down is transient: the handler raises ``MarketDataRedisUnavailable`` (an ``OperationalError``), so
the runner rolls back, waits and retries instead of dead-lettering; nothing is skipped, the book stays exact.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import OperationalError

from apps.core.consumers import ConsumerSpec, MessageMeta, consumer_register
from apps.core.events import EventEnvelope
from apps.marketdata import services
from apps.marketdata.cache import RedisUnavailable

CONSUMER_NAME = "marketdata"
TOPICS = ("marketdata.trades", "marketdata.book")


class MarketDataRedisUnavailable(OperationalError):
    """Redis is down while applying an event: retry the whole effect later (never dead-letter)."""


def _int(payload: dict[str, Any], name: str, scale: int) -> int:
    suffixed = payload.get(f"{name}_e{scale}")
    if isinstance(suffixed, int) and not isinstance(suffixed, bool):
        return suffixed
    exact = Decimal(str(payload[name])).scaleb(scale)
    if exact != exact.to_integral_value():
        raise ValueError(f"{name}={payload[name]!r} is finer than 1e-{scale}")
    return int(exact)


def _timestamp(envelope: EventEnvelope) -> datetime:
    raw = envelope.payload.get("timestamp")
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return envelope.occurred_at


def envelope_apply(envelope: EventEnvelope, meta: MessageMeta) -> None:
    p = envelope.payload
    try:
        if envelope.event_type == "engine.TradeExecuted":
            services.trade_record(
                symbol=str(p["symbol"]),
                trade_id=str(p["trade_id"]),
                price_e4=_int(p, "price", 4),
                qty_e9=_int(p, "qty", 9),
                book_seq=int(p["book_seq"]),
                timestamp=_timestamp(envelope),
                aggressor=str(p.get("aggressor", "")),
            )
        elif envelope.event_type == "engine.BookLevelChanged":
            services.book_level_apply(
                symbol=str(p["symbol"]),
                side=str(p["side"]),
                price_e4=_int(p, "price", 4),
                qty_e9=_int(p, "qty", 9),
                order_count=int(p.get("order_count", 0)),
                book_seq=int(p["book_seq"]),
                timestamp=_timestamp(envelope),
            )
        # Other engine events on these topics carry nothing market data shows.
    except RedisUnavailable as exc:
        raise MarketDataRedisUnavailable(str(exc)) from exc


marketdata_consumer = consumer_register(
    ConsumerSpec(name=CONSUMER_NAME, topics=TOPICS, handler=envelope_apply, mode="inline")
)

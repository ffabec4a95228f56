"""``settlement.fills``: a replay tool booking engine fills from ``orders.events`` via the Kafka -> Celery bridge.

Fills are booked by the ``orders.projection`` consumer, in the same transaction as the order's new state
(``apps.orders.projection``, ``settlement.bulk.trade_date_book``); that is the one booking path the Procfile
runs. This consumer is not part of it: it booked every fill a second time, idempotently, at about a third of the
pipeline's CPU per order (bench/ingest.py, docs/PERFORMANCE.md). It stays registered for recovery: after a
projection outage an operator may run ``manage.py run_consumer settlement.fills`` (its group starts at the
earliest retained offset) to book any fill the ledger lacks. ``inbox_apply`` makes each event
apply once; ``fill_settle_trade_date`` is itself idempotent by fill id, so a fill the projection already booked,
or one replayed under a new event id (engine recovery), changes nothing. Missing fills are found by the
``fills_vs_engine`` reconciliation (``apps.settlement.reconciliation``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from apps.core import events
from apps.core.consumers import ConsumerSpec, MessageMeta, consumer_register
from apps.settlement.services import fill_settle_trade_date
from apps.settlement.types import FillData

FILL_EVENT_TYPE = "engine.OrderFilled"


def _decimal(payload: dict[str, Any], name: str) -> Decimal:
    raw = payload[name]
    if not isinstance(raw, str):
        raise ValueError(f"{name} must be a decimal string, got {type(raw).__name__}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"{name} must be finite")
    return value


def fill_data_from_event(payload: dict[str, Any]) -> FillData:
    """The ONE place that maps the ``engine.OrderFilled`` payload to ``FillData`` (align changes here)."""
    side = str(payload["side"]).lower()
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be buy or sell, got {side!r}")
    filled_at = datetime.fromisoformat(str(payload["filled_at"]).replace("Z", "+00:00"))
    if filled_at.tzinfo is None:
        raise ValueError("filled_at must carry a UTC offset")
    return FillData(
        fill_id=str(payload["fill_id"]),
        order_id=str(payload["order_id"]),
        account_id=str(payload["account_id"]),
        symbol=str(payload["symbol"]),
        side="buy" if side == "buy" else "sell",
        qty=_decimal(payload, "qty"),
        price=_decimal(payload, "price"),
        filled_at=filled_at.astimezone(UTC),
        liquidity=str(payload.get("liquidity") or ""),
        cum_qty=_decimal(payload, "cum_qty") if payload.get("cum_qty") is not None else None,
        leaves_qty=_decimal(payload, "leaves_qty") if payload.get("leaves_qty") is not None else None,
    )


def order_event_apply(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
    """Handler: book fills; every other order event is not the ledger's business."""
    if envelope.event_type != FILL_EVENT_TYPE:
        return
    fill_settle_trade_date(fill=fill_data_from_event(envelope.payload))


SETTLEMENT_FILLS = consumer_register(
    ConsumerSpec(
        name="settlement.fills",
        topics=("orders.events",),
        handler=order_event_apply,
        mode="celery",
        # Only fills reach the ledger: every other order event would be a Celery round trip that does nothing.
        event_types=frozenset({FILL_EVENT_TYPE}),
    )
)

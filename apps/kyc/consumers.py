"""Kafka consumers of the kyc app.

``kyc.transfers`` (Kafka → Celery bridge on ``transfers.events``): a ``TransferQueued`` event starts the simulated
ACH/wire/ACATS step chain. It runs inside ``inbox_apply`` (once per event id) and enqueues on commit; if the
enqueue is lost, ``transfers_sweep`` advances the transfer anyway.

``kyc.aml_trades`` (Kafka → Celery bridge on ``orders.events``, routed to the ``compliance`` queue by
``apps.kyc.celery_routes``): every ``engine.TradeExecuted`` is mapped to its buyer's and seller's accounts through
``apps.orders.selectors.order_accounts`` and fed to ``aml_trade_observe`` inside ``inbox_apply``'s transaction,
so the observation and any alert commit with the inbox row (once per event id; ``aml_trade_observe`` is itself
idempotent by ``trade_id``, so an engine replay under a new event id changes nothing). A trade whose orders are
not ours raises: the bridge task fails loudly rather than silently skipping a trade compliance must see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from apps.core import events
from apps.core.consumers import ConsumerSpec, MessageMeta, consumer_register

TRADE_EVENT_TYPE = "engine.TradeExecuted"


def transfer_event_handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
    if envelope.event_type != "transfers.TransferQueued":
        return
    from apps.kyc.tasks import transfer_simulation_start

    transfer_id = str(envelope.payload["transfer_id"])
    transaction.on_commit(lambda: transfer_simulation_start(transfer_id))


KYC_TRANSFERS = consumer_register(
    ConsumerSpec(
        name="kyc.transfers", topics=("transfers.events",), handler=transfer_event_handle, mode="celery"
    )
)


def _decimal(payload: dict[str, Any], name: str) -> Decimal:
    raw = payload[name]
    if not isinstance(raw, str):
        raise ValueError(f"{name} must be a decimal string, got {type(raw).__name__}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite decimal, got {raw!r}")
    return value


def _executed_at(envelope: events.EventEnvelope) -> datetime:
    raw = envelope.payload.get("filled_at")
    if not isinstance(raw, str):
        return envelope.occurred_at.astimezone(UTC)
    at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("filled_at must carry a UTC offset")
    return at.astimezone(UTC)


def trade_event_handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
    """Handler: feed one executed trade to the AML trade rules; every other order event is ignored."""
    if envelope.event_type != TRADE_EVENT_TYPE:
        return
    from apps.accounts.models import BrokerageAccount
    from apps.kyc.services.aml import aml_trade_observe
    from apps.orders.selectors import order_accounts

    payload = envelope.payload
    buy_order_id, sell_order_id = str(payload["buy_order_id"]), str(payload["sell_order_id"])
    owners = order_accounts(order_ids=[buy_order_id, sell_order_id])
    missing = sorted({buy_order_id, sell_order_id} - owners.keys())
    if missing:
        raise ValueError(f"trade {payload.get('trade_id')!r}: orders {missing} are unknown")
    accounts = {str(pk): a for pk, a in BrokerageAccount.objects.in_bulk(set(owners.values())).items()}
    aml_trade_observe(
        trade_id=str(payload["trade_id"]),
        symbol=str(payload["symbol"]),
        qty=_decimal(payload, "qty"),
        price=_decimal(payload, "price"),
        executed_at=_executed_at(envelope),
        buy_account=accounts[owners[buy_order_id]],
        sell_account=accounts[owners[sell_order_id]],
    )


KYC_AML_TRADES = consumer_register(
    ConsumerSpec(
        name="kyc.aml_trades",
        topics=("orders.events",),
        handler=trade_event_handle,
        mode="celery",
        # Only executed trades reach the AML rules: every other order event (about five per order) would be a
        # Celery task that does nothing.
        event_types=frozenset({TRADE_EVENT_TYPE}),
        # One Celery task per 100 trades of a consume batch, applied in one transaction (the per-task cost of
        # Celery was most of the worker's CPU per trade in bench/ingest.py).
        transaction_batch=100,
    )
)

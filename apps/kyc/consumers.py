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

from collections.abc import Sequence
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
    trade_events_handle([(envelope, meta)])


def trade_events_handle(items: Sequence[tuple[events.EventEnvelope, MessageMeta]]) -> None:
    """Chunk handler: the same effect as ``trade_event_handle`` on each in turn, with the chunk's orders and
    accounts read at once (``aml_trades_observe`` keeps the per-trade order of the rules)."""
    from apps.accounts.models import BrokerageAccount
    from apps.kyc.services.aml import TradeSeen, aml_trades_observe
    from apps.orders.selectors import order_accounts

    trades = [env for env, _meta in items if env.event_type == TRADE_EVENT_TYPE]
    if not trades:
        return
    sides = [(str(env.payload["buy_order_id"]), str(env.payload["sell_order_id"])) for env in trades]
    owners = order_accounts(order_ids=sorted({order for pair in sides for order in pair}))
    for env, pair in zip(trades, sides, strict=True):
        missing = sorted(set(pair) - owners.keys())
        if missing:
            raise ValueError(f"trade {env.payload.get('trade_id')!r}: orders {missing} are unknown")
    accounts = {str(pk): a for pk, a in BrokerageAccount.objects.in_bulk(set(owners.values())).items()}
    aml_trades_observe(
        [
            TradeSeen(
                trade_id=str(env.payload["trade_id"]),
                symbol=str(env.payload["symbol"]),
                qty=_decimal(env.payload, "qty"),
                price=_decimal(env.payload, "price"),
                executed_at=_executed_at(env),
                buy_account=accounts[owners[buy]],
                sell_account=accounts[owners[sell]],
            )
            for env, (buy, sell) in zip(trades, sides, strict=True)
        ]
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
        chunk_handler=trade_events_handle,
    )
)

"""Projection of the engine's events (``orders.events``) onto Order, Fill and TradeUpdate rows.

Invariants:
- Runs inside ``inbox_apply`` (one transaction per envelope, deduplicated by ``event_id``); in addition every
  Fill is unique by ``fill_id`` and every TradeUpdate by ``source_id``, so a replayed event changes nothing.
- Terminal orders never move back; fills still apply to them (a fill can race a cancel in the engine only
  before the cancel, so in practice fills precede the terminal event).
- Holds and share reservations are released through ``apps.settlement.services`` exactly once, when the
  order becomes terminal (``hold_release``/``shares_release`` are idempotent by order id); each fill is
  settled on trade date by ``fill_settle_trade_date``, which releases its part of the hold.
- Every customer-visible change appends one ``TradeUpdate`` with the account's next gap-free ``seq`` and
  pushes it to the account's Channels group after commit (at most once; REST is the truth).

Payloads are the engine-runner contract (docs/interfaces.md): the engine event as builtins, each
``*_e4``/``*_e9`` int also as a decimal string without the suffix (``price``, ``qty``, ``cum_qty``...).
"""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from apps.core import events
from apps.core.consumers import MessageMeta
from apps.core.errors import NotFound
from apps.core.fields import format_decimal
from apps.core.outbox import aggregate_next_sequence
from apps.orders.models import Fill, Order, TradeUpdate
from apps.orders.presenters import order_json
from apps.orders.risk import WIDE

AVG_PRICE_QUANTUM = Decimal("0.0000000001")


def _settlement() -> Any:
    return importlib.import_module("apps.settlement.services")


def _order_for(engine_order_id: str) -> Order | None:
    """Resolve the engine's id: a UUID, or ``{parent}:tp`` / ``{parent}:sl`` for legs."""
    base, _, suffix = engine_order_id.partition(":")
    try:
        parent_id = uuid.UUID(base)
    except ValueError:
        return None
    qs = Order.objects.select_for_update()
    if not suffix:
        return qs.filter(id=parent_id).first()
    role = Order.LegRole.TAKE_PROFIT if suffix == "tp" else Order.LegRole.STOP_LOSS
    return qs.filter(parent_id=parent_id, leg_role=role).first()


def _ts(envelope: events.EventEnvelope, payload: dict[str, Any]) -> datetime:
    raw = payload.get("filled_at")
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return envelope.occurred_at


def trade_update_emit(
    *,
    order: Order,
    event: str,
    source_id: str,
    timestamp: datetime,
    price: Decimal | None = None,
    qty: Decimal | None = None,
    position_qty: Decimal | None = None,
) -> TradeUpdate | None:
    """Append the account's next trade update (idempotent by ``source_id``) and push it after commit."""
    if TradeUpdate.objects.filter(source_id=source_id).exists():
        return None
    seq = aggregate_next_sequence(aggregate_type="trade_updates", aggregate_id=str(order.account_id))
    data: dict[str, Any] = {
        "event": event,
        "order": order_json(order),
        "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        "seq": seq,
    }
    if price is not None:
        data["price"] = format_decimal(price)
    if qty is not None:
        data["qty"] = format_decimal(qty)
    if position_qty is not None:
        data["position_qty"] = format_decimal(position_qty)
    with transaction.atomic():
        update = TradeUpdate.objects.create(
            account_id=order.account_id,
            seq=seq,
            order=order,
            event=event,
            source_id=source_id,
            data=data,
            created_at=timestamp,
        )
    account_id = str(order.account_id)
    transaction.on_commit(lambda: _push(account_id, data))
    return update


def group_name(account_id: str) -> str:
    return f"trade_updates.{account_id}"


def _push(account_id: str, data: dict[str, Any]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(account_id), {"type": "trade.update", "data": data})
    except Exception:  # the push is best effort; clients resync over REST by seq
        return


def _release(order: Order) -> None:
    """Release what is left of the order's hold / reservation (idempotent in settlement)."""
    if order.parent_id is not None:
        return  # legs hold nothing: they exit the shares their entry bought
    settlement = _settlement()
    try:
        if order.side == Order.Side.BUY:
            settlement.hold_release(order_id=str(order.id))
        else:
            settlement.shares_release(order_id=str(order.id))
    except NotFound:
        return  # nothing was held for it (e.g. an order written before holds existed): nothing to release


def _touch(order: Order, ts: datetime, *fields: str) -> None:
    order.updated_at = ts
    order.save(update_fields=[*fields, "updated_at"])


def _position_qty(order: Order) -> Decimal | None:
    try:
        position = importlib.import_module("apps.settlement.selectors").position(order.account, order.symbol)
    except (ImportError, AttributeError):
        return None
    return position.qty if position is not None else Decimal(0)


def _on_accepted(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    if order.status not in (Order.Status.PENDING_NEW, Order.Status.HELD):
        return
    if order.status == Order.Status.HELD:
        return  # a held bracket/oto leg: it goes live with OrderActivated
    order.status = Order.Status.NEW
    _touch(order, envelope.occurred_at, "status")
    trade_update_emit(
        order=order, event="new", source_id=str(envelope.event_id), timestamp=envelope.occurred_at
    )


def _on_activated(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    if order.status != Order.Status.HELD:
        return
    order.status = Order.Status.NEW
    order.qty = Decimal(p["qty"])
    _touch(order, envelope.occurred_at, "status", "qty")
    trade_update_emit(
        order=order, event="new", source_id=str(envelope.event_id), timestamp=envelope.occurred_at
    )


def _on_filled(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    qty, price = Decimal(p["qty"]), Decimal(p["price"])
    ts = _ts(envelope, p)
    try:
        with transaction.atomic():
            Fill.objects.create(
                fill_id=p["fill_id"],
                trade_id=p["trade_id"],
                order=order,
                account_id=order.account_id,
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                liquidity=p.get("liquidity") or Fill.Liquidity.TAKER,
                filled_at=ts,
            )
    except IntegrityError:
        return  # this fill was already projected
    order.filled_qty = order.filled_qty + qty
    order.filled_value = WIDE.add(order.filled_value, WIDE.multiply(qty, price))
    order.filled_avg_price = WIDE.divide(order.filled_value, order.filled_qty).quantize(
        AVG_PRICE_QUANTUM, context=WIDE
    )
    done = int(p.get("leaves_qty_e9", 0)) == 0
    fields = ["filled_qty", "filled_value", "filled_avg_price"]
    if order.status not in Order.TERMINAL:
        order.status = Order.Status.FILLED if done else Order.Status.PARTIALLY_FILLED
        fields.append("status")
    if done:
        order.filled_at = ts
        fields.append("filled_at")
    _touch(order, ts, *fields)
    settle = getattr(_settlement(), "fill_settle_trade_date", None)
    if settle is not None:
        from apps.settlement.types import FillData

        settle(
            fill=FillData(
                fill_id=p["fill_id"],
                order_id=str(order.id),
                account_id=str(order.account_id),
                symbol=order.symbol,
                side=order.side,  # type: ignore[arg-type]
                qty=qty,
                price=price,
                filled_at=ts,
                liquidity=p.get("liquidity") or "",
            )
        )
    if done:
        _release(order)
    trade_update_emit(
        order=order,
        event="fill" if done else "partial_fill",
        source_id=str(envelope.event_id),
        timestamp=ts,
        price=price,
        qty=qty,
        position_qty=_position_qty(order),
    )


def _terminal(
    envelope: events.EventEnvelope, order: Order, status: str, stamp: str, event: str, reason: str = ""
) -> None:
    if order.status in Order.TERMINAL:
        return
    order.status = status
    setattr(order, stamp, envelope.occurred_at)
    fields = ["status", stamp]
    if reason and status == Order.Status.CANCELED:
        order.cancel_reason = reason[:64]
        fields.append("cancel_reason")
    if reason and status == Order.Status.REJECTED:
        order.reject_reason = reason[:64]
        fields.append("reject_reason")
    _touch(order, envelope.occurred_at, *fields)
    _release(order)
    trade_update_emit(
        order=order, event=event, source_id=str(envelope.event_id), timestamp=envelope.occurred_at
    )


def _on_rejected(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    _terminal(envelope, order, Order.Status.REJECTED, "failed_at", "rejected", p.get("reason", ""))
    if order.replaces_id is not None:
        # The engine refused the replace: the old order stays as it was, and so does its hold/reservation
        # (order_replace keeps it until the engine confirms); only the refused order's own is released.
        old = Order.objects.select_for_update().get(id=order.replaces_id)
        if old.status == Order.Status.PENDING_REPLACE:
            old.status = Order.Status.PARTIALLY_FILLED if old.filled_qty > 0 else Order.Status.NEW
            old.replaced_by = None
            _touch(old, envelope.occurred_at, "status", "replaced_by")


def _trailing_water(order: Order, p: dict[str, Any], stop: Decimal) -> Decimal | None:
    """The water mark a trailing stop triggered at: the event's ``water`` (``OrderTriggered.water_e4``).

    Exact for ``trail_price`` and ``trail_percent`` stops alike. Events recorded before the engine sent it
    carry none (``water`` absent or null): then it is derived exactly from a trail price, and stays unknown
    (None) for a ``trail_percent`` stop, whose engine-side rounding hides it.
    """
    if isinstance(p.get("water"), str):
        return Decimal(p["water"])
    if order.trail_price is None:
        return None
    return stop - order.trail_price if order.side == Order.Side.BUY else stop + order.trail_price


def _on_triggered(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    """A stop (limit) / trailing stop was triggered by a trade at or through its stop price.

    The order stays open (Alpaca keeps type and status; there is no ``triggered`` trade update): the row
    records the stop price it triggered at and, for a trailing stop, its water mark (``hwm``), which the
    fill's trade update then carries.
    """
    if order.status in Order.TERMINAL or not isinstance(p.get("stop_price"), str):
        return
    fields: list[str] = []
    if order.type == Order.Type.TRAILING_STOP:
        stop = Decimal(p["stop_price"])
        order.stop_price = stop
        fields.append("stop_price")
        water = _trailing_water(order, p, stop)
        if water is not None:
            order.hwm = water
            fields.append("hwm")
    _touch(order, envelope.occurred_at, *fields)


def _on_canceled(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    _terminal(envelope, order, Order.Status.CANCELED, "canceled_at", "canceled", p.get("reason", ""))


def _on_expired(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    _terminal(envelope, order, Order.Status.EXPIRED, "expired_at", "expired")


def _on_replaced(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    _terminal(envelope, order, Order.Status.REPLACED, "replaced_at", "replaced")


_HANDLERS = {
    "engine.OrderAccepted": _on_accepted,
    "engine.OrderActivated": _on_activated,
    "engine.OrderFilled": _on_filled,
    "engine.OrderRejected": _on_rejected,
    "engine.OrderCanceled": _on_canceled,
    "engine.OrderExpired": _on_expired,
    "engine.OrderReplaced": _on_replaced,
    "engine.OrderTriggered": _on_triggered,
}


def engine_event_apply(envelope: events.EventEnvelope, meta: MessageMeta | None = None) -> None:
    """Consumer handler (``orders.projection``). Events that do not concern an order row are ignored."""
    handler = _HANDLERS.get(envelope.event_type)
    if handler is None:
        return  # TradeExecuted, BookLevelChanged, SessionChanged: market data's business
    order_id = envelope.payload.get("order_id")
    if not isinstance(order_id, str):
        return
    order = _order_for(order_id)
    if order is None:
        return  # not ours (e.g. a bench order injected directly on the topic)
    handler(envelope, envelope.payload, order)

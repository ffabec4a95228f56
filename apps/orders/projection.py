"""Projection of the engine's events (``orders.events``) onto Order, Fill and TradeUpdate rows.

Invariants:
- Runs inside ``inbox_apply_many`` / ``inbox_apply`` (the chunk's or the envelope's transaction, deduplicated by
  ``event_id``); in addition every Fill is unique by ``fill_id`` and every TradeUpdate by ``source_id``, so a
  replayed event changes nothing.
- Terminal orders never move back; fills still apply to them (a fill can race a cancel in the engine only
  before the cancel, so in practice fills precede the terminal event).
- Holds and share reservations are released through ``apps.settlement`` exactly once, when the order becomes
  terminal (``bulk.trade_date_book`` for a chunk, ``hold_release``/``shares_release`` on their own; all release
  only what is left, so a repeat releases nothing); each fill is settled on trade date
  (``bulk.trade_date_book``, as ``fill_settle_trade_date`` fill by fill), which consumes its part of
  the hold or reservation.
- Every customer-visible change appends one ``TradeUpdate`` with the account's next gap-free ``seq`` and
  pushes it to the account's Channels group after commit (at most once; REST is the truth).

Set-based apply (``engine_events_apply``, the consumer's ``chunk_handler``; one event is a chunk of one): the
handlers run event by event, in order, on the chunk's order rows, which are locked ONCE up front
(``select_for_update`` in primary-key order, legs and replaced orders included); their writes are collected by
a ``_Chunk`` and flushed at the end: one bulk UPDATE of the touched orders, one bulk INSERT of fills, one
statement allocating every account's run of ``seq`` (accounts in id order), one bulk INSERT of trade updates,
the fills and releases booked in event order by ONE ``settlement.bulk.trade_date_book`` call, and ONE
after-commit push of all trade updates (one event loop, not one per event). The effect is exactly that of
applying the events one by one:
- fills already stored, or twice in the chunk, are skipped (the set of known ``fill_id`` s grows as we go); a
  known ``fill_id`` whose order, quantity or price differ is refused (``FillIdConflict``: the event is retried,
  then dead-lettered with an error), never skipped: two different executions never share an id;
- ``position_qty`` is the position read after the chunk's settlement (under its locks, as the per-event path
  read it after each fill's), less the chunk's later fills of that account and symbol;
- settlement books the fills and releases in event order, as the per-op services would (its own tests compare).

Payloads are the engine-runner contract (docs/interfaces.md): the engine event as builtins, each
``*_e4``/``*_e9`` int also as a decimal string without the suffix (``price``, ``qty``, ``cum_qty``...).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Field

from apps.core import events
from apps.core.consumers import MessageMeta
from apps.core.copy import copy_insert
from apps.core.errors import NotFound
from apps.core.fields import format_decimal
from apps.core.money import WIDE
from apps.core.outbox import aggregate_sequences_allocate
from apps.core.sql import hot_cursor, models_from_sql, rows_from_sql, select_list
from apps.orders.models import Fill, Order, TradeUpdate
from apps.orders.presenters import order_json

logger = logging.getLogger(__name__)

AVG_PRICE_QUANTUM = Decimal("0.0000000001")


def _settlement() -> Any:
    return importlib.import_module("apps.settlement.services")


def _leg_key(engine_order_id: str) -> tuple[uuid.UUID, str] | None:
    """The engine's id: a UUID, or ``{parent}:tp`` / ``{parent}:sl`` for legs. None when it is neither."""
    base, _, suffix = engine_order_id.partition(":")
    try:
        parent_id = uuid.UUID(base)
    except ValueError:
        return None
    if not suffix:
        return parent_id, ""
    return parent_id, Order.LegRole.TAKE_PROFIT if suffix == "tp" else Order.LegRole.STOP_LOSS


def _ts(envelope: events.EventEnvelope, payload: dict[str, Any]) -> datetime:
    raw = payload.get("filled_at")
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return envelope.occurred_at


@dataclass(slots=True)
class _Update:
    order: Order
    event: str
    source_id: str
    timestamp: datetime
    data: dict[str, Any]
    position: tuple[tuple[str, str], Decimal] | None = None  # (account, symbol), the chunk's fills up to here


_FillKey = tuple[uuid.UUID, Decimal, Decimal]  # a fill's order id, quantity and price


class FillIdConflict(ValueError):
    """An ``OrderFilled`` whose ``fill_id`` is stored for another execution (refused, never skipped)."""


class _Chunk:
    """The rows of one chunk (locked once) and the writes its events decided, flushed together (module doc)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order | None] = {}  # engine order id -> locked row (None: not ours)
        self.by_pk: dict[uuid.UUID, Order] = {}
        self.dirty: dict[uuid.UUID, set[str]] = {}
        self.fills: list[Fill] = []
        self.fill_ids: dict[str, _FillKey] = {}  # stored, or added by this chunk
        self.source_ids: set[str] = set()  # TradeUpdate source ids stored, or added by this chunk
        self.updates: list[_Update] = []
        self.position_delta: dict[tuple[str, str], Decimal] = {}  # the chunk's fills so far, signed
        self.settlement_ops: list[Any] = []  # FillData / OrderRelease for settlement.bulk.trade_date_book

    def load(self, envelopes: Sequence[events.EventEnvelope]) -> None:
        """Lock every order the chunk names (and the orders they replace) once, in primary-key order."""
        keys = {
            oid: _leg_key(oid) for env in envelopes if isinstance(oid := env.payload.get("order_id"), str)
        }
        named = {k[0] for k in keys.values() if k is not None and not k[1]}
        legs = sorted({k for k in keys.values() if k is not None and k[1]})
        if legs:  # a bracket's legs, named by parent and role: their ids first (rare: an extra read)
            found = rows_from_sql(_LEG_IDS_SQL, [[p for p, _ in legs], [str(role) for _, role in legs]])
            named.update(leg_id for (leg_id,) in found)
        rows = models_from_sql(Order, _ORDERS_LOCK_SQL, [sorted(named)] * 2) if named else []
        self.by_pk = {o.pk: o for o in rows}
        leg_rows = {(o.parent_id, o.leg_role): o for o in rows if o.parent_id is not None}
        for oid, key in keys.items():
            if key is None:
                self.orders[oid] = None
            elif not key[1]:
                self.orders[oid] = self.by_pk.get(key[0])
            else:
                self.orders[oid] = leg_rows.get(key)
        fill_ids = [
            str(env.payload["fill_id"]) for env in envelopes if env.event_type == "engine.OrderFilled"
        ]
        if fill_ids:
            self.fill_ids = {
                fill_id: (order_id, qty, price)
                for fill_id, order_id, qty, price in rows_from_sql(_FILLS_STORED_SQL, [fill_ids])
            }
        stored = rows_from_sql(_TRADE_UPDATES_STORED_SQL, [[str(env.event_id) for env in envelopes]])
        self.source_ids = {source_id for (source_id,) in stored}

    def order_by_pk(self, pk: uuid.UUID) -> Order:
        order = self.by_pk.get(pk)
        if order is None:  # not named by the chunk: lock it now
            order = self.by_pk[pk] = Order.objects.select_for_update().get(id=pk)
        return order

    def fill_add(self, fill: Fill) -> bool:
        """Queue the fill row; False when this fill was already projected. Raises ``FillIdConflict``."""
        key = (fill.order_id, fill.qty, fill.price)
        known = self.fill_ids.get(fill.fill_id)
        if known is not None:
            if known != key:  # the consumer logs each retry and the dead letter with this message
                raise FillIdConflict(
                    f"fill {fill.fill_id} is stored for order {known[0]} ({known[1]} @ {known[2]}), "
                    f"the event names order {key[0]} ({key[1]} @ {key[2]})"
                )
            return False
        self.fill_ids[fill.fill_id] = key
        self.fills.append(fill)
        return True

    def settle_add(self, fill: Any) -> None:
        """Queue a fill for trade-date settlement (in event order with the releases)."""
        self.settlement_ops.append(fill)
        key = (fill.account_id, fill.symbol)
        signed = fill.qty if fill.side == Order.Side.BUY else -fill.qty
        self.position_delta[key] = self.position_delta.get(key, Decimal(0)) + signed

    def release_add(self, order: Order) -> None:
        self.settlement_ops.append(_settlement_bulk().OrderRelease(order_id=str(order.id)))

    def position_mark(self, order: Order, source_id: str) -> None:
        """The trade update just queued for ``source_id`` carries the position after this fill (at the flush)."""
        if self.updates and self.updates[-1].source_id == source_id:
            key = (str(order.account_id), order.symbol)
            self.updates[-1].position = (key, self.position_delta.get(key, Decimal(0)))

    def _positions_fill(self) -> None:
        """``position_qty`` of the marked updates: the position now, less the chunk's later fills."""
        marked = [u for u in self.updates if u.position is not None]
        if not marked:
            return
        now = _settlement_bulk().position_qtys(pairs={u.position[0] for u in marked if u.position})
        for u in marked:
            assert u.position is not None
            key, upto = u.position
            qty = now[key] - (self.position_delta[key] - upto)
            u.data["position_qty"] = format_decimal(qty if qty != 0 else Decimal(0))

    def flush(self) -> list[TradeUpdate]:
        """Write everything the chunk decided (inside its transaction); returns the trade updates written.

        The firm's ledger rows (clearing, fees), which every fill moves, are locked and moved last, so other
        projection processes' chunks wait for them only from then to this chunk's commit
        (``settlement.services.ledger_rows_lock``)."""
        house = _settlement_bulk().HouseMoves()
        if self.settlement_ops:
            _settlement_bulk().trade_date_book(ops=self.settlement_ops, house=house)
        rows = self._write()
        house.apply()
        return rows

    def _write(self) -> list[TradeUpdate]:
        if self.dirty:
            fields = sorted(set().union(*self.dirty.values()) | {"updated_at"})
            _orders_update([self.by_pk[pk] for pk in sorted(self.dirty)], fields)
        if self.fills:
            copy_insert(Fill, self.fills)
        if not self.updates:
            return []
        self._positions_fill()
        counts: dict[str, int] = {}
        for u in self.updates:
            counts[str(u.order.account_id)] = counts.get(str(u.order.account_id), 0) + 1
        next_seq = _seq_ranges(counts)
        rows: list[TradeUpdate] = []
        pushes: list[tuple[str, dict[str, Any]]] = []
        for u in self.updates:
            account_id = str(u.order.account_id)
            u.data["seq"] = next_seq[account_id]
            next_seq[account_id] += 1
            rows.append(
                TradeUpdate(
                    account_id=u.order.account_id,
                    seq=u.data["seq"],
                    order=u.order,
                    event=u.event,
                    source_id=u.source_id,
                    data=u.data,
                    created_at=u.timestamp,
                )
            )
            pushes.append((account_id, u.data))
        copy_insert(TradeUpdate, rows)  # the rows' ids are not read: clients order by seq
        transaction.on_commit(lambda: _push_many(pushes))
        return rows


def _orders_update(orders: Sequence[Order], fields: Sequence[str]) -> None:
    """Write ``fields`` of the (locked) orders in ONE ``UPDATE ... FROM (VALUES ...)``.

    ``QuerySet.bulk_update`` does the same with a CASE expression per field and row, whose construction showed
    in the profile; the values are prepared by the model fields as ``save()`` prepares them.
    """
    model_fields: list[Field[Any, Any]] = []
    for name in fields:
        f = Order._meta.get_field(name)
        assert isinstance(f, Field)
        model_fields.append(f)
    columns = [f.column for f in model_fields]
    casts = ["uuid", *(f.db_type(connection) for f in model_fields)]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    params: list[Any] = []
    for order in orders:
        params.append(order.pk)
        params += [f.get_db_prep_save(getattr(order, f.attname), connection) for f in model_fields]
    names = ", ".join(f'"{c}"' for c in ["id", *columns])
    assignments = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    with hot_cursor() as cursor:
        cursor.execute(
            f'UPDATE "{Order._meta.db_table}" AS o SET {assignments} '  # noqa: S608 - names from the model
            f"FROM (VALUES {', '.join([row] * len(orders))}) AS v({names}) WHERE o.id = v.id",
            params,
        )


# A chunk's reads: fixed statement texts (prepared once per connection, and cheap to plan: PostgreSQL keeps
# planning a statement whose generic plan looks worse than its custom ones), no ORM statement building per chunk.
# The orders the chunk names and the orders they replace, locked in primary-key order.
_ORDERS_LOCK_SQL = (
    f"SELECT {select_list(Order)} FROM {Order._meta.db_table} WHERE id = ANY(%s::uuid[] || ARRAY("  # noqa: S608
    f"SELECT replaces_id FROM {Order._meta.db_table} WHERE id = ANY(%s::uuid[]) AND replaces_id IS NOT NULL)) "
    "ORDER BY id FOR UPDATE"
)
_LEG_IDS_SQL = (
    f"SELECT o.id FROM {Order._meta.db_table} o "  # noqa: S608 (model meta)
    "JOIN unnest(%s::uuid[], %s::text[]) AS k(p, r) ON o.parent_id = k.p AND o.leg_role = k.r"
)
_FILLS_STORED_SQL = (
    f"SELECT fill_id, order_id, qty, price FROM {Fill._meta.db_table} "  # noqa: S608 (model meta)
    "WHERE fill_id = ANY(%s::text[])"
)
_TRADE_UPDATES_STORED_SQL = (
    f"SELECT source_id FROM {TradeUpdate._meta.db_table} WHERE source_id = ANY(%s::text[])"  # noqa: S608
)

_CHUNK: ContextVar[_Chunk | None] = ContextVar("orders_projection_chunk", default=None)


def _settlement_bulk() -> Any:
    return importlib.import_module("apps.settlement.bulk")


def _seq_ranges(counts: dict[str, int]) -> dict[str, int]:
    """Reserve ``counts[account]`` consecutive ``trade_updates`` seqs per account in ONE statement (accounts
    locked in id order until commit); returns each account's first seq."""
    first = aggregate_sequences_allocate(aggregates=[("trade_updates", a, n) for a, n in counts.items()])
    return {a: first[("trade_updates", a)] for a in counts}


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
    """Append the account's next trade update (idempotent by ``source_id``) and push it after commit.

    Inside a projection chunk it is queued (snapshot of the order now, ``seq`` at the flush) and None is
    returned; called on its own it is written at once and returned (None when ``source_id`` exists).
    """
    chunk = _CHUNK.get()
    if chunk is None:
        with transaction.atomic():
            chunk = _Chunk()
            chunk.source_ids = set(
                TradeUpdate.objects.filter(source_id=source_id).values_list("source_id", flat=True)
            )
            token = _CHUNK.set(chunk)
            try:
                trade_update_emit(
                    order=order,
                    event=event,
                    source_id=source_id,
                    timestamp=timestamp,
                    price=price,
                    qty=qty,
                    position_qty=position_qty,
                )
            finally:
                _CHUNK.reset(token)
            written = chunk.flush()
        return written[0] if written else None
    if source_id in chunk.source_ids:
        return None
    chunk.source_ids.add(source_id)
    data: dict[str, Any] = {
        "event": event,
        "order": order_json(order),
        "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        "seq": None,  # allocated at the flush
    }
    if price is not None:
        data["price"] = format_decimal(price)
    if qty is not None:
        data["qty"] = format_decimal(qty)
    if position_qty is not None:
        data["position_qty"] = format_decimal(position_qty)
    chunk.updates.append(_Update(order, event, source_id, timestamp, data))
    return None


def group_name(account_id: str) -> str:
    return f"trade_updates.{account_id}"


def _push_many(pushes: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Send a committed chunk's trade updates in order, in one Redis round trip (best effort, at most once)."""
    from apps.core.pubsub import group_send_many

    try:
        group_send_many(
            [(group_name(account_id), {"type": "trade.update", "data": data}) for account_id, data in pushes]
        )
    except Exception:  # the push is best effort; clients resync over REST by seq, but say that it failed
        logger.warning(
            "trade_updates push failed; clients resync over REST by seq",
            exc_info=True,
            extra={"pushes": len(pushes)},
        )


def _release(order: Order) -> None:
    """Release what is left of the order's hold / reservation (queued after the chunk's fills; module doc)."""
    if order.parent_id is not None:
        return  # legs hold nothing: they exit the shares their entry bought
    chunk = _CHUNK.get()
    if chunk is None:
        _release_now(order)
    else:
        chunk.release_add(order)


def _release_now(order: Order) -> None:
    """Release what is left of the order's hold / reservation (idempotent in settlement)."""
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
    chunk = _CHUNK.get()
    if chunk is None:
        order.save(update_fields=[*fields, "updated_at"])
    else:
        chunk.dirty.setdefault(order.pk, set()).update(fields)


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
    chunk = _chunk()
    fill = Fill(
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
    if not chunk.fill_add(fill):
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
    from apps.settlement.types import FillData

    chunk.settle_add(
        FillData(
            fill_id=p["fill_id"],
            order_id=str(order.id),
            account_id=str(order.account_id),
            symbol=order.symbol,
            side=order.side,  # type: ignore[arg-type]
            qty=qty,
            price=price,
            filled_at=ts,
            liquidity=p.get("liquidity") or "",
            # The order's progress for the FILL activity (fill or partial_fill), as the engine reports it.
            cum_qty=Decimal(p["cum_qty"]) if p.get("cum_qty") is not None else None,
            leaves_qty=Decimal(p["leaves_qty"]) if p.get("leaves_qty") is not None else None,
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
    )
    chunk.position_mark(order, str(envelope.event_id))


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
        old = _chunk().order_by_pk(order.replaces_id)
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


def _on_adjusted(envelope: events.EventEnvelope, p: dict[str, Any], order: Order) -> None:
    """A live order put on post-split terms by the engine (``OrderAdjusted``, docs/engine.md "splits").

    The row takes the engine's absolute terms. ``orders_adjust_for_split`` already wrote the same values in the
    split's transaction, so live this changes nothing; in a rebuild from ``orders.events`` (which resets the
    fill progress) it is what moves the pre-split fills to post-split units, as the split did live.
    """
    if order.status in Order.TERMINAL:
        return
    fields: list[str] = []
    qty, cum = Decimal(p["qty"]), Decimal(p["cum_qty"])
    if order.qty is not None and order.qty != qty:
        order.qty = qty
        fields.append("qty")
    if cum > 0 and cum != order.filled_qty:
        order.filled_qty = cum
        order.filled_avg_price = WIDE.divide(order.filled_value, cum).quantize(
            AVG_PRICE_QUANTUM, context=WIDE
        )
        fields += ["filled_qty", "filled_avg_price"]
    for name in ("limit_price", "stop_price", "trail_price"):
        value = p.get(name)
        if (
            isinstance(value, str)
            and getattr(order, name) is not None
            and getattr(order, name) != Decimal(value)
        ):
            setattr(order, name, Decimal(value))
            fields.append(name)
    if fields:
        _touch(order, envelope.occurred_at, *fields)


_HANDLERS = {
    "engine.OrderAccepted": _on_accepted,
    "engine.OrderAdjusted": _on_adjusted,
    "engine.OrderActivated": _on_activated,
    "engine.OrderFilled": _on_filled,
    "engine.OrderRejected": _on_rejected,
    "engine.OrderCanceled": _on_canceled,
    "engine.OrderExpired": _on_expired,
    "engine.OrderReplaced": _on_replaced,
    "engine.OrderTriggered": _on_triggered,
}


def _chunk() -> _Chunk:
    chunk = _CHUNK.get()
    if chunk is None:
        raise RuntimeError("engine event handlers run inside engine_events_apply")
    return chunk


def engine_events_apply(items: Iterable[tuple[events.EventEnvelope, MessageMeta | None]]) -> None:
    """Consumer chunk handler (``orders.projection``): the events in order, as if applied one by one (module
    doc). Events that do not concern an order row are ignored. Runs inside the caller's transaction."""
    relevant = [
        env
        for env, _ in items
        if env.event_type in _HANDLERS and isinstance(env.payload.get("order_id"), str)
    ]
    if not relevant:
        return
    chunk = _Chunk()
    chunk.load(relevant)
    token = _CHUNK.set(chunk)
    try:
        for env in relevant:
            order = chunk.orders.get(env.payload["order_id"])
            if order is None:
                continue  # not ours (e.g. a bench order injected directly on the topic)
            _HANDLERS[env.event_type](env, env.payload, order)
    finally:
        _CHUNK.reset(token)
    chunk.flush()


def engine_event_apply(envelope: events.EventEnvelope, meta: MessageMeta | None = None) -> None:
    """Consumer handler (``orders.projection``): one event, a chunk of one."""
    engine_events_apply([(envelope, meta)])

"""Rebuild the orders read model (Order progress, Fill, TradeUpdate) from the engine's ``orders.events`` history.

Invariants:
- The engine's journal ``orders.events`` is kept forever, so it is the source of truth for everything the
  projection (consumer ``orders.projection``) writes; the rebuild replays it through the same handler.
- Runs in one durable transaction: reset the projection-owned state, replay every event from the beginning up to
  the end offsets read at the start (throwaway consumer group, read_committed, offsets never committed), then
  restore the service-owned in-flight request statuses (pending_cancel / pending_replace) of orders that are
  still live. ``verify`` does the same and rolls back, comparing field by field.
- Settlement side effects are not reset: ``fill_settle_trade_date`` returns the existing entry for a booked fill
  and ``hold_release``/``shares_release`` release nothing from an already released hold.
- The live consumer must be stopped: the rebuild refuses to run while consumer group ``orders.projection`` has
  active members (a consumer starting after that check would block on the row locks and then skip the replayed
  events through the inbox, so the result stays correct, only its pushes are lost).
- Known limits: with several partitions, per-account ``seq`` follows a merge by ``occurred_at`` which may differ
  from the live interleaving; a TradeUpdate's embedded ``order`` snapshot and ``position_qty`` are point-in-time
  copies of other state and are recomputed from current state, so ``verify`` does not compare them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When

from apps.core import events, kafka
from apps.core.consumers import MessageMeta
from apps.core.errors import Conflict
from apps.core.models import AggregateSequence, InboxRecord
from apps.orders.consumers import ORDERS_PROJECTION
from apps.orders.models import Fill, Order, TradeUpdate

ORDER_FIELDS = (
    "status",
    "qty",
    "filled_qty",
    "filled_value",
    "filled_avg_price",
    "replaced_by_id",
    "cancel_reason",
    "reject_reason",
    "updated_at",
    "filled_at",
    "canceled_at",
    "expired_at",
    "failed_at",
    "replaced_at",
)
FILL_FIELDS = (
    "trade_id",
    "order_id",
    "account_id",
    "symbol",
    "side",
    "qty",
    "price",
    "liquidity",
    "filled_at",
)
UPDATE_FIELDS = ("account_id", "seq", "order_id", "event", "created_at")
REQUEST_STATUSES = (Order.Status.PENDING_CANCEL, Order.Status.PENDING_REPLACE)


@dataclass(frozen=True, slots=True)
class RebuildResult:
    events: int
    differences: list[str]


def _group_active(group: str) -> bool:
    admin = kafka.admin_client()
    futures = admin.describe_consumer_groups([kafka.topic_name(group)])
    for future in futures.values():
        description = future.result(timeout=10)
        if description.members:
            return True
    return False


def events_read(
    *, topic: str = "orders.events", timeout: float = 30.0
) -> list[tuple[events.EventEnvelope, MessageMeta]]:
    """Every committed event of ``topic`` up to its current end offsets, merged across partitions by time.

    ``timeout`` bounds the wait for each record (not the whole read); a missing topic has no events.
    """
    out: list[tuple[events.EventEnvelope, MessageMeta]] = []
    try:
        for record in kafka.topic_read_to_end(
            topic, timeout=None, idle_timeout=timeout, group_prefix="orders.rebuild"
        ):
            key = record.key
            out.append(
                (
                    events.decode(record.value or b""),
                    MessageMeta(
                        topic, record.partition, record.offset, key.decode() if key is not None else None
                    ),
                )
            )
    except kafka.TopicNotReadable:
        return []
    except KafkaException as exc:
        raise RuntimeError(str(exc)) from exc
    # Each partition stays in offset order; partitions are merged by event time.
    per_partition = [
        [item for item in out if item[1].partition == p] for p in sorted({m.partition for _, m in out})
    ]
    return list(heapq.merge(*per_partition, key=lambda item: item[0].occurred_at))


def _snapshot() -> dict[str, dict[str, tuple[Any, ...]]]:
    return {
        "order": {str(row[0]): row[1:] for row in Order.objects.values_list("id", *ORDER_FIELDS)},
        "fill": {row[0]: row[1:] for row in Fill.objects.values_list("fill_id", *FILL_FIELDS)},
        "trade_update": {
            row[0]: (*row[1:-1], {k: v for k, v in row[-1].items() if k not in ("order", "position_qty")})
            for row in TradeUpdate.objects.values_list("source_id", *UPDATE_FIELDS, "data")
        },
    }


def _diff(
    live: dict[str, dict[str, tuple[Any, ...]]], rebuilt: dict[str, dict[str, tuple[Any, ...]]]
) -> list[str]:
    names = {"order": ORDER_FIELDS, "fill": FILL_FIELDS, "trade_update": (*UPDATE_FIELDS, "data")}
    out: list[str] = []
    for kind, fields in names.items():
        a, b = live[kind], rebuilt[kind]
        for key in sorted(a.keys() | b.keys()):
            if key not in b:
                out.append(f"{kind} {key}: live only")
            elif key not in a:
                out.append(f"{kind} {key}: rebuilt only")
            else:
                out += [
                    f"{kind} {key} {name}: live={x!r} rebuilt={y!r}"
                    for name, x, y in zip(fields, a[key], b[key], strict=True)
                    if x != y
                ]
    return out


def _reset() -> None:
    TradeUpdate.objects.all().delete()
    Fill.objects.all().delete()
    InboxRecord.objects.filter(consumer=ORDERS_PROJECTION.name).delete()
    AggregateSequence.objects.filter(aggregate_type="trade_updates").delete()
    # The status the order service wrote at submit (services._legs / order_submit / order_replace).
    Order.objects.update(
        status=Case(
            When(parent__isnull=True, then=Value(Order.Status.PENDING_NEW)),
            When(order_class=Order.OrderClass.OCO, then=Value(Order.Status.PENDING_NEW)),
            default=Value(Order.Status.HELD),
        ),
        filled_qty=0,
        filled_value=0,
        filled_avg_price=None,
        cancel_reason="",
        reject_reason="",
        updated_at=F("submitted_at"),
        filled_at=None,
        canceled_at=None,
        expired_at=None,
        failed_at=None,
        replaced_at=None,
    )


def orders_rebuild(
    *, verify: bool = False, timeout: float = 30.0, check_consumer: bool = True
) -> RebuildResult:
    """Rebuild (or, with ``verify``, only compare) the orders read model from ``orders.events``."""
    if check_consumer and not verify and _group_active(ORDERS_PROJECTION.group):
        raise Conflict(
            f"consumer group {ORDERS_PROJECTION.group!r} has active members: stop the consumer first"
        )
    history = events_read(timeout=timeout)
    with transaction.atomic(durable=True):
        list(Order.objects.select_for_update().order_by("id").values_list("id", flat=True))
        live = _snapshot()
        requests = {
            row[0]: row[1:]
            for row in Order.objects.filter(status__in=REQUEST_STATUSES).values_list(
                "id", "status", "updated_at"
            )
        }
        _reset()
        for envelope, meta in history:
            # The body of inbox_apply, as savepoints: inbox_apply itself opens a durable transaction.
            try:
                with transaction.atomic():
                    InboxRecord.objects.create(
                        consumer=ORDERS_PROJECTION.name,
                        event_id=envelope.event_id,
                        topic=meta.topic,
                        partition=meta.partition,
                        offset=meta.offset,
                    )
            except IntegrityError:
                continue  # a duplicate in the journal: applied once, as live
            ORDERS_PROJECTION.handler(envelope, meta)
        for order_id, (status, updated_at) in requests.items():
            # A cancel/replace request the engine has not answered yet is the service's state, not the journal's.
            Order.objects.filter(id=order_id).exclude(status__in=Order.TERMINAL).update(
                status=status, updated_at=updated_at
            )
        differences = _diff(live, _snapshot())
        # Rebuilt trade updates were already pushed once, live: do not push them again on commit.
        connection.run_on_commit = []
        if verify:
            transaction.set_rollback(True)
    return RebuildResult(events=len(history), differences=differences)

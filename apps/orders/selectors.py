"""Order reads, always scoped to one account (another account's order is simply not found)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db.models import Prefetch, Q, QuerySet

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound
from apps.core.sql import hot_cursor
from apps.orders.models import Asset, Order

MAX_LIST_LIMIT = 500
DEFAULT_LIST_LIMIT = 50


def _with_legs(qs: QuerySet[Order]) -> QuerySet[Order]:
    return qs.select_related("asset").prefetch_related(
        Prefetch("legs", queryset=Order.objects.select_related("asset").order_by("-leg_role", "id"))
    )


def order_get(*, account: BrokerageAccount, order_id: uuid.UUID) -> Order:
    order = _with_legs(Order.objects.filter(account=account, id=order_id)).first()
    if order is None:
        raise NotFound("order not found", field="order_id")
    return order


def order_get_by_client_order_id(*, account: BrokerageAccount, client_order_id: str) -> Order:
    order = _with_legs(Order.objects.filter(account=account, client_order_id=client_order_id)).first()
    if order is None:
        raise NotFound("order not found", field="client_order_id")
    return order


def order_list(
    *,
    account: BrokerageAccount,
    status: str = "open",
    limit: int = DEFAULT_LIST_LIMIT,
    after: datetime | None = None,
    until: datetime | None = None,
    direction: str = "desc",
    symbols: Sequence[str] = (),
    side: str | None = None,
    nested: bool = False,
) -> list[Order]:
    """Alpaca's ``GET /v2/orders``: by submission time; ``nested`` puts legs under their parent only."""
    qs = Order.objects.filter(account=account)
    if status == "open":
        qs = qs.filter(status__in=Order.OPEN)
    elif status == "closed":
        qs = qs.exclude(status__in=Order.OPEN)
    if after is not None:
        qs = qs.filter(submitted_at__gt=after)
    if until is not None:
        qs = qs.filter(submitted_at__lt=until)
    if symbols:
        qs = qs.filter(symbol__in=[s.upper() for s in symbols])
    if side is not None:
        qs = qs.filter(side=side)
    if nested:
        qs = qs.filter(parent__isnull=True)
    ordering = ["submitted_at", "id"] if direction == "asc" else ["-submitted_at", "-id"]
    return list(_with_legs(qs.order_by(*ordering))[: min(limit, MAX_LIST_LIMIT)])


def asset_get(*, symbol_or_id: str) -> Asset:
    filters: dict[str, Any]
    try:
        filters = {"id": uuid.UUID(symbol_or_id)}
    except ValueError:
        filters = {"symbol": symbol_or_id.upper()}
    asset = Asset.objects.filter(**filters).first()
    if asset is None:
        raise NotFound("asset not found", field="symbol")
    return asset


def asset_list(*, status: str | None = None) -> list[Asset]:
    qs = Asset.objects.all().order_by("symbol")
    if status:
        qs = qs.filter(status=status)
    return list(qs)


def order_reservations(*, order_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Reserved cash/shares of every open parent order, plus of the orders in ``order_ids`` (any status).

    For settlement's reconciliation (holds = open orders' reserved amounts). Each row: ``id`` (str),
    ``account_id`` (str), ``side``, ``status``, ``is_open``, ``reserved_amount``, ``reserved_qty``.
    """
    ids: list[uuid.UUID] = []
    for raw in order_ids:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            continue  # not an order id of ours: the caller reports it as orphaned
    qs = Order.objects.filter(parent__isnull=True).filter(
        Q(status__in=Order.OPEN, reserved_amount__gt=0)
        | Q(status__in=Order.OPEN, reserved_qty__gt=0)
        | Q(id__in=ids)
    )
    return [
        {
            "id": str(row["id"]),
            "account_id": str(row["account_id"]),
            "side": row["side"],
            "status": row["status"],
            "is_open": row["status"] in Order.OPEN,
            "reserved_amount": row["reserved_amount"],
            "reserved_qty": row["reserved_qty"],
        }
        for row in qs.order_by("id").values(
            "id", "account_id", "side", "status", "reserved_amount", "reserved_qty"
        )
    ]


def order_accounts(*, order_ids: Sequence[str]) -> dict[str, str]:
    """Engine order id -> account id (str) for the ids that are our orders; others are simply absent.

    Engine ids are an order UUID, or ``"{parent}:tp"`` / ``"{parent}:sl"`` for a bracket leg, which belongs to
    its parent's account. For consumers mapping ``engine.TradeExecuted`` sides to accounts (AML monitoring).
    """
    bases: dict[str, uuid.UUID] = {}
    for raw in order_ids:
        try:
            bases[raw] = uuid.UUID(raw.partition(":")[0])
        except ValueError:
            continue
    owners = {
        row["id"]: str(row["account_id"])
        for row in Order.objects.filter(id__in=set(bases.values())).values("id", "account_id")
    }
    return {raw: owners[base] for raw, base in bases.items() if base in owners}


class RestingOrder(NamedTuple):
    """What the crossing rules read of a stored open order (``services.crossing_rules_check``)."""

    id: uuid.UUID
    type: str
    limit_price: Decimal | None
    symbol: str
    side: str


# The crossing rules' read, on the submit hot path: plain SQL, because building the queryset cost more CPU than
# PostgreSQL spends running it. Led by (account, symbol, side, status): it reads only those orders, not every
# open order of the account (a bot with thousands resting; the index test in tests/orders/test_order_api.py).
# One symbol and side (a single submit) are compared as scalars: with one-element arrays the planner's estimate
# is vaguer and it was seen to pick the (account, status) index instead.
_OPEN_CROSSABLE = """
    SELECT id, type, limit_price, symbol, side FROM orders_order
    WHERE account_id = %s AND symbol {op} AND side {op} AND status = ANY(%s)
      AND parent_id IS NULL AND order_class <> %s
    ORDER BY id
"""
OPEN_CROSSABLE_ONE_SQL = _OPEN_CROSSABLE.format(op="= %s")
OPEN_CROSSABLE_MANY_SQL = _OPEN_CROSSABLE.format(op="= ANY(%s)")


def open_orders_crossable(
    *, account_id: uuid.UUID, symbols: Sequence[str], sides: Sequence[str]
) -> list[RestingOrder]:
    """The account's open orders on ``symbols`` and ``sides`` that a new order may cross (no legs, no oco)."""
    values: list[Any]
    if len(symbols) == 1 and len(sides) == 1:
        sql, values = OPEN_CROSSABLE_ONE_SQL, [symbols[0], sides[0]]
    else:
        sql, values = OPEN_CROSSABLE_MANY_SQL, [list(symbols), list(sides)]
    with hot_cursor() as cursor:
        cursor.execute(sql, [account_id, *values, list(Order.OPEN), Order.OrderClass.OCO])
        return [RestingOrder(*row) for row in cursor.fetchall()]

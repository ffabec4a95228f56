"""Account activities (Alpaca's ``GET /v2/account/activities``) read from the journal.

Activity ids are ``<UTC yyyymmddHHMMSSmmm>::<activity uuid>``, sortable by time; the page token is the id of the
last activity of the previous page. Order is ``(occurred_at, entry id)``, descending by default, so paging is
stable even when many entries share a timestamp. Internal movements (holds, settlement) are not activities.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from apps.accounts.models import BrokerageAccount
from apps.core.errors import ValidationError
from apps.settlement.models import JournalEntry

ACTIVITY_TYPES = ("FILL", "CSD", "CSW", "FEE", "DIV", "SPLIT", "JNLC", "JNLS")
TRADE_TYPES = ("FILL",)
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    activity_types: tuple[str, ...] = ACTIVITY_TYPES
    on_date: date | None = None
    after: datetime | None = None
    until: datetime | None = None
    direction: str = "desc"
    page_size: int = MAX_PAGE_SIZE
    page_token: str | None = None


def activity_id(entry: JournalEntry) -> str:
    ts = entry.occurred_at.strftime("%Y%m%d%H%M%S%f")[:-3]
    return f"{ts}::{entry.activity_id}"


def _token_entry(token: str) -> JournalEntry:
    try:
        _, raw = token.split("::", 1)
        return JournalEntry.objects.get(activity_id=uuid.UUID(raw))
    except (ValueError, JournalEntry.DoesNotExist):
        raise ValidationError("page_token is not a valid activity id", field="page_token") from None


def activities_page(account: BrokerageAccount, query: ActivityQuery) -> list[JournalEntry]:
    """One page of the account's activities, newest first unless ``direction="asc"``."""
    unknown = set(query.activity_types) - set(ACTIVITY_TYPES)
    if unknown:
        raise ValidationError(f"unsupported activity types: {sorted(unknown)}", field="activity_types")
    qs: QuerySet[JournalEntry] = JournalEntry.objects.filter(
        account=account, entry_type__in=query.activity_types
    )
    if query.on_date is not None:
        qs = qs.filter(effective_date=query.on_date)
    if query.after is not None:
        qs = qs.filter(occurred_at__gt=query.after)
    if query.until is not None:
        qs = qs.filter(occurred_at__lt=query.until)
    desc = query.direction == "desc"
    if query.page_token:
        last = _token_entry(query.page_token)
        if desc:
            qs = qs.filter(
                Q(occurred_at__lt=last.occurred_at) | Q(occurred_at=last.occurred_at, pk__lt=last.pk)
            )
        else:
            qs = qs.filter(
                Q(occurred_at__gt=last.occurred_at) | Q(occurred_at=last.occurred_at, pk__gt=last.pk)
            )
    order = ["-occurred_at", "-pk"] if desc else ["occurred_at", "pk"]
    size = max(1, min(query.page_size, MAX_PAGE_SIZE))
    return list(qs.order_by(*order)[:size])


def _cum_qty(entry: JournalEntry) -> str:
    """Cumulative filled quantity of the order up to and including this fill (from the journal)."""
    rows = JournalEntry.objects.filter(
        account_id=entry.account_id,
        entry_type=JournalEntry.EntryType.FILL,
        details__order_id=entry.details.get("order_id"),
        pk__lte=entry.pk,
    ).values_list("details__qty", flat=True)
    return str(sum((Decimal(q) for q in rows), Decimal(0)))


def activity_render(entry: JournalEntry) -> dict[str, Any]:
    """Alpaca's TradingActivities / NonTradeActivities shapes; every decimal is a string."""
    d = entry.details
    if entry.entry_type == JournalEntry.EntryType.FILL:
        leaves = d.get("leaves_qty")
        done = leaves is not None and Decimal(leaves) == 0
        return {
            "id": activity_id(entry),
            "activity_type": "FILL",
            "transaction_time": entry.occurred_at.isoformat().replace("+00:00", "Z"),
            "type": "fill" if done else "partial_fill",
            "price": d["price"],
            "qty": d["qty"],
            "side": d["side"],
            "symbol": d["symbol"],
            "leaves_qty": leaves,
            "order_id": d["order_id"],
            "cum_qty": d.get("cum_qty") or _cum_qty(entry),
            "order_status": "filled" if done else "partially_filled",
        }
    body: dict[str, Any] = {
        "id": activity_id(entry),
        "activity_type": entry.entry_type,
        "date": entry.effective_date.isoformat(),
        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
        "net_amount": d.get("net_amount", d.get("amount", "0")),
        "description": entry.description,
        "status": "executed",
        "currency": "USD",
    }
    for key in ("symbol", "qty", "per_share_amount"):
        if key in d:
            body[key] = d[key]
    if entry.entry_type == JournalEntry.EntryType.FEE:
        body["activity_sub_type"] = "REG"
    return body
